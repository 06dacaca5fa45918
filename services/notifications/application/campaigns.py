"""Campaign commands on the shared command runner, and reads that must see the latest write (a
campaign by id). A definition is checked whole (the domain), then against what it names: its
templates must exist and be live, its segments must exist at segmentation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from services.notifications.domain.campaigns import campaign as domain
from services.notifications.domain.campaigns import definition as defs
from services.notifications.domain.campaigns.campaign import Campaign
from services.notifications.domain.template import Template
from shared.application.commands import Aggregate, CommandRunner, Event, Then, new_id
from shared.domain.errors import Invalid, NotFound
from shared.eventstore import EventStore

NS = uuid.UUID("0c3f6f4e-8a51-4b7e-9d2a-6e1f3b5c7a94")  # never change: retries would repeat

CAMPAIGN: Aggregate[Campaign] = Aggregate(
    namespace=NS,
    stream_of=domain.stream_of,
    fold=lambda _id, rows: domain.fold(rows),
    evolve=domain.apply,
    missing="CAMPAIGN_NOT_FOUND",
    id_field="campaign_id",
)


class Templates(Protocol):
    async def get(self, template_id: str = "", key: str = "") -> Template: ...


class Segments(Protocol):
    """Segmentation, as campaigns use it."""

    async def ids_of(self, keys: Sequence[str]) -> dict[str, str]:
        """The segment id of each key that names a segment (archived ones too)."""
        ...

    async def members(self, segment_id: str, as_of: datetime) -> list[str]:
        """The segment's members at ``as_of``."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class CampaignCommands:
    def __init__(
        self,
        store: EventStore,
        templates: Templates,
        segments: Segments,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.store, self.templates, self.segments, self.clock = store, templates, segments, clock
        self.runner = CommandRunner(store)

    async def check_named(self, definition: Mapping[str, Any]) -> None:
        """What the definition names exists: INVALID_ARGUMENT listing what does not."""
        problems: list[tuple[str, str, str]] = []
        for i, v in enumerate(definition.get("variants", [])):
            try:
                t = await self.templates.get(key=str(v["template_key"]))
            except NotFound:
                problems.append(
                    (f"definition.variants[{i}].template_key", "TEMPLATE_NOT_FOUND", "no such key")
                )
                continue
            if t.archived:
                problems.append(
                    (f"definition.variants[{i}].template_key", "TEMPLATE_ARCHIVED", "archived")
                )
        for field in ("include_segments", "exclude_segments"):
            keys = [str(k) for k in definition.get(field, [])]
            known = await self.segments.ids_of(keys) if keys else {}
            for i, key in enumerate(keys):
                if key not in known:
                    problems.append(
                        (f"definition.{field}[{i}]", "SEGMENT_NOT_FOUND", f"no segment {key}")
                    )
        if problems:
            raise Invalid(problems)

    async def create(
        self, definition: Mapping[str, Any], *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Campaign:
        campaign_id = new_id(NS, "campaign", request_id)
        decided = domain.decide_create(campaign_id, definition)
        await self.check_named(definition)

        async def plan(_attempt: int) -> tuple[list[Event], list[Any]]:
            return decided, []

        return await self.runner.create(
            CAMPAIGN, campaign_id, plan, request_id=request_id, meta=meta
        )

    async def schedule(
        self,
        campaign_id: str,
        schedule: Mapping[str, Any],
        *,
        etag: str = "",
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Campaign:
        when = defs.schedule_of(schedule, self.clock())

        def decide(state: Campaign) -> list[Event]:
            return domain.decide_schedule(state, when)

        return await self.runner.execute(
            CAMPAIGN, campaign_id, decide, etag=etag, request_id=request_id, meta=meta
        )

    async def change(
        self,
        campaign_id: str,
        change: str,
        *,
        data: Mapping[str, Any] = {},
        request_id: str = "",
        meta: Mapping[str, Any] = {},
        then: Then | None = None,
    ) -> Campaign:
        """Pause, resume, cancel (the API), start and complete (the engine): ``change`` is the
        event type; ``then`` writes more in the same transaction (the recipients)."""

        def decide(state: Campaign) -> list[Event]:
            return domain.decide(state, change, data)

        return await self.runner.execute(
            CAMPAIGN, campaign_id, decide, request_id=request_id, meta=meta, then=then
        )

    async def get(self, campaign_id: str) -> Campaign:
        return await self.runner.get(CAMPAIGN, campaign_id)
