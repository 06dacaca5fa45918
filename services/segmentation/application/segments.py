"""Segment commands on the shared command runner: the rule is parsed, checked (fields, types,
cycles through in_segment) and stored in canonical text; a segment's key is claimed by the
first event of its own stream, in the same atomic write as the segment's creation."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from services.segmentation.domain import rules
from services.segmentation.domain import segment as domain
from services.segmentation.domain.segment import Segment
from shared.application.commands import Aggregate, CommandRunner, Event, new_id
from shared.application.keys import UniqueKey
from shared.domain.errors import Invalid
from shared.eventstore import EventStore, StreamAppend

NS = uuid.UUID("3e9b1f6a-7c24-4d8e-b5a1-9f0c2d4e6a18")  # never change: retries would repeat
KEY_CLAIMED = "crm.segmentation.v1.SegmentKeyClaimed"  # internal: the key stream's only event

SEGMENT: Aggregate[Segment] = Aggregate(
    namespace=NS,
    stream_of=domain.stream_of,
    fold=lambda _id, rows: domain.fold(rows),
    evolve=domain.evolve,
    missing="SEGMENT_NOT_FOUND",
    id_field="segment_id",
)
KEY = UniqueKey(NS, domain.key_stream, KEY_CLAIMED, "segment_id", "segment")


class SegmentCatalog(Protocol):
    async def rules_by_key(self) -> dict[str, str]:
        """The rule text of every active segment, by key."""
        ...


def canonical(text: str, field: str = "rule") -> rules.Rule:
    """The parsed rule; INVALID_ARGUMENT naming line and column when it is not one."""
    try:
        return rules.parse(text)
    except rules.RuleError as err:
        raise Invalid([(field, v.reason, v.description) for v in err.violations]) from None


class SegmentCommands:
    def __init__(self, store: EventStore, catalog: SegmentCatalog) -> None:
        self.store, self.catalog = store, catalog
        self.runner = CommandRunner(store)

    async def _checked(self, key: str, text: str) -> str:
        rule = canonical(text)
        graph: dict[str, Any] = {}
        for k, other in (await self.catalog.rules_by_key()).items():
            graph[k] = rules.segments_referenced(rules.parse(other))
        graph[key] = rules.segments_referenced(rule)
        try:
            rules.check_no_cycles(graph)
        except rules.RuleError as err:
            raise Invalid([("rule", v.reason, v.description) for v in err.violations]) from None
        return rules.format_rule(rule)

    async def create(
        self,
        key: str,
        name: str,
        description: str,
        rule: str,
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Segment:
        segment_id = new_id(NS, "segment", request_id)
        domain.decide_create(segment_id, key, name, description, rule or " ")  # shape first
        text = await self._checked(key, rule)
        decided = domain.decide_create(segment_id, key, name, description, text)

        async def plan(_attempt: int) -> tuple[list[Event], list[StreamAppend]]:
            return decided, [await KEY.claim(self.store, key, segment_id, request_id, meta)]

        return await self.runner.create(SEGMENT, segment_id, plan, request_id=request_id, meta=meta)

    async def update(
        self,
        segment_id: str,
        name: str,
        description: str,
        rule: str,
        *,
        etag: str = "",
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Segment:
        current = await self.runner.get(SEGMENT, segment_id)
        text = await self._checked(current.key, rule) if rule.strip() else ""

        def decide(state: Segment) -> list[Event]:
            return domain.decide_update(state, name, description, text or " ")

        return await self.runner.execute(
            SEGMENT, segment_id, decide, etag=etag, request_id=request_id, meta=meta
        )

    async def archive(
        self, segment_id: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Segment:
        return await self.runner.execute(
            SEGMENT, segment_id, domain.decide_archive, request_id=request_id, meta=meta
        )
