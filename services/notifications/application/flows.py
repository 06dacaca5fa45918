"""Flow commands on the shared command runner, and reads that must see the latest write (a flow
by id or key). A key is claimed by the first event of its own stream, in the same atomic write
as the flow's creation (as templates' keys are)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from services.notifications.domain.flows import flow as domain
from services.notifications.domain.flows.flow import FlowState
from shared.application.commands import Aggregate, CommandRunner, Event, new_id
from shared.application.keys import UniqueKey
from shared.eventstore import EventStore, StreamAppend

NS = uuid.UUID("5b0e9a3c-47d2-4e1b-8f6a-2c9d8e7f1a30")  # never change: retries would repeat

FLOW: Aggregate[FlowState] = Aggregate(
    namespace=NS,
    stream_of=domain.stream_of,
    fold=lambda _id, rows: domain.fold(rows),
    evolve=domain.evolve,
    missing="FLOW_NOT_FOUND",
    id_field="flow_id",
)
KEY = UniqueKey(NS, domain.key_stream, domain.KEY_CLAIMED, "flow_id", "flow")


class FlowCommands:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.runner = CommandRunner(store)

    async def create(
        self, definition: Mapping[str, Any], *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> FlowState:
        flow_id = new_id(NS, "flow", request_id)
        decided = domain.decide_create(flow_id, definition)
        key = str(decided[0][1]["key"])

        async def plan(_attempt: int) -> tuple[list[Event], list[StreamAppend]]:
            return decided, [await KEY.claim(self.store, key, flow_id, request_id, meta)]

        return await self.runner.create(FLOW, flow_id, plan, request_id=request_id, meta=meta)

    async def update(
        self,
        definition: Mapping[str, Any],
        *,
        etag: str = "",
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> FlowState:
        """A new version of the flow named by the definition's key."""
        flow_id = await self.id_of(str(definition.get("key", "")))

        def decide(state: FlowState) -> list[Event]:
            return domain.decide_update(state, definition)

        return await self.runner.execute(
            FLOW, flow_id, decide, etag=etag, request_id=request_id, meta=meta
        )

    async def change(
        self,
        flow_id: str,
        decide: Callable[[FlowState], list[Event]],
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> FlowState:
        """Pause, resume or archive (``decide`` is one of the domain's)."""
        return await self.runner.execute(FLOW, flow_id, decide, request_id=request_id, meta=meta)

    # --- reads from the log: always the latest write -------------------------------------------

    async def id_of(self, key: str) -> str:
        return await KEY.holder(self.store, key)

    async def get(self, flow_id: str = "", key: str = "") -> FlowState:
        """A flow by id, or by key (the key stream names its flow)."""
        return await self.runner.get(FLOW, await self.id_of(key) if key else flow_id)
