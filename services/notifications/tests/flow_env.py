"""A flow engine on a real store, its timers and its effects worker with a recording sender:
the environment of the flow engine's tests."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.notifications.adapters import flow_run_tables as t
from services.notifications.adapters.flow_effects_table import PostgresEffects
from services.notifications.adapters.flow_engine import FlowEngine
from services.notifications.adapters.flow_timers import FlowTimers
from services.notifications.application.flow_effects import FlowEffects
from services.notifications.application.flows import FlowCommands
from services.notifications.application.sending import SendRequest
from services.notifications.domain.flows import run as runs
from services.notifications.tests.test_flow_definitions import EXAMPLES, json_form
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.errors import Unavailable
from shared.projections.runner import ProjectionRunner


class Sent:
    def __init__(self) -> None:
        self.requests: list[SendRequest] = []
        self.tags: list[tuple[str, list[str], list[str], str]] = []

    async def send(self, request: SendRequest, meta: Mapping[str, Any] = {}) -> None:
        self.requests.append(request)

    async def tag(self, contact_id: str, add: Any, remove: Any, request_id: str) -> None:
        self.tags.append((contact_id, list(add), list(remove), request_id))


class Rules:
    """Segmentation's rule evaluation, faked: the answer per (contact, rule), false when
    unset; ``away`` makes it UNAVAILABLE as the real client is when segmentation is down."""

    def __init__(self) -> None:
        self.holds: dict[tuple[str, str], bool] = {}
        self.asked: list[tuple[str, str]] = []
        self.away = False

    async def evaluate(self, contact_id: str, rule: str) -> bool:
        self.asked.append((contact_id, rule))
        if self.away:
            raise Unavailable("SEGMENTATION_UNAVAILABLE", "segmentation is away")
        return self.holds.get((contact_id, rule), False)


class Env:
    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.engine = FlowEngine(store)
        self.runner = ProjectionRunner(store, self.engine, retries=1, retry_delay=0)
        self.sent = Sent()
        self.rules = Rules()
        self.effects = FlowEffects(PostgresEffects(store), self.sent, self.sent, self.rules)
        self.contact = str(uuid.uuid4())

    async def flow(self, name: str) -> str:
        definition = json_form((EXAMPLES[0].parent / f"{name}.yaml").read_text())
        return (await FlowCommands(self.store).create(definition)).flow_id

    async def publish(self, stream: str, type_: str, **data: Any) -> datetime:
        new = NewEvent(type_, {"contact_id": self.contact, **data})
        await self.store.append(stream, [new], StreamState.ANY)
        await self.runner.catch_up()
        [recorded] = [e for e in await self.store.read_stream(stream) if e.event_id == new.event_id]
        return recorded.recorded_at

    async def runs(self) -> list[t.RunRow]:
        rows = await self.store.pool.fetch(f"SELECT * FROM {t.SCHEMA}.runs ORDER BY start_time")
        return [t.run_of(r) for r in rows]

    async def run_events(self, run_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e.type, e.data) for e in await self.store.read_stream(runs.stream_of(run_id))]

    def timers(self, at: datetime) -> FlowTimers:
        return FlowTimers(self.store, self.engine.definitions, clock=lambda: at)
