"""Explanations and dry runs: why a contact is (not) in a segment, what a rule says of one
contact now, and what a draft rule would select, from the engine's facts and the membership
events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.segmentation.adapters.facts_queries import FactsQueries
from services.segmentation.application import membership as m
from services.segmentation.application.segments import canonical
from services.segmentation.domain import rules
from services.segmentation.domain.facts import Facts
from services.segmentation.domain.segment import Segment
from shared.domain.errors import NotFound
from shared.domain.timestamps import timestamp_from_text
from shared.eventstore import EventStore, RecordedEvent


@dataclass(frozen=True)
class Explained:
    decided_by: RecordedEvent | None  # the membership event in force at the instant asked
    now: rules.Explanation | None  # the current rule on the current facts
    # the rule version in force at the instant, on the facts as they stood then, at that instant
    then: rules.Explanation | None = None
    then_version: int = 0


class PastFacts(Protocol):
    """A contact's facts at a past instant (adapters/facts_history.py)."""

    async def of(self, contact_id: str, at: datetime, segments: Iterable[str]) -> Facts | None: ...


class Stay(Protocol):
    @property
    def key(self) -> str: ...


class Memberships(Protocol):
    """The segments a contact was in at an instant (the membership spans)."""

    async def segments_of(self, contact_id: str, at: datetime) -> Sequence[Stay]: ...


@dataclass
class Preview:
    rule: str
    count: int = 0
    sample: list[str] = field(default_factory=list)
    would_enter: int = 0
    would_exit: int = 0


class Insight:
    def __init__(
        self,
        store: EventStore,
        facts: FactsQueries,
        past: PastFacts | None = None,
        memberships: Memberships | None = None,
    ) -> None:
        self.store, self.facts, self.past, self.memberships = store, facts, past, memberships

    async def explain(
        self, segment: Segment, contact_id: str, at: datetime, now: datetime
    ) -> Explained:
        events = await self.store.read_stream(m.stream_of(contact_id))
        deciding = [
            e
            for e in events
            if e.data.get("segment_id") == segment.segment_id
            and timestamp_from_text(e.data["effective_time"]) <= at
        ]
        facts = await self.facts.of(contact_id)
        tree = None
        if facts is not None and not segment.archived:
            tree = rules.explain(rules.parse(segment.rule), facts, now)
        then, version = await self._then(segment, contact_id, at)
        return Explained(deciding[-1] if deciding else None, tree, then, version)

    async def _then(
        self, segment: Segment, contact_id: str, at: datetime
    ) -> tuple[rules.Explanation | None, int]:
        """The rule in force at ``at`` on the facts of ``at``: (None, 0) when the segment or
        the contact did not exist yet, or the segment was archived."""
        if self.past is None or self.memberships is None:
            return None, 0
        in_force = None
        for e in await self.store.read_stream(f"segment-{segment.segment_id}"):
            if e.recorded_at > at:
                break
            in_force = None if e.type.endswith("SegmentArchived") else e
        if in_force is None:
            return None, 0
        stays = await self.memberships.segments_of(contact_id, at)
        facts = await self.past.of(contact_id, at, [s.key for s in stays])
        if facts is None:
            return None, 0
        rule = rules.parse(in_force.data["rule"])
        return rules.explain(rule, facts, at), int(in_force.data["rule_version"])

    async def evaluate(
        self, text: str, contact_id: str, now: datetime
    ) -> tuple[str, rules.Explanation]:
        """The rule in canonical text (INVALID_ARGUMENT with the parser's reasons when it is
        not one) and its explanation for the contact on its current facts, at ``now`` (false
        for an erased or merged contact, as for membership); CONTACT_NOT_FOUND when
        segmentation holds no facts for it (never registered, or not yet seen by its
        engine)."""
        rule = canonical(text)
        facts = await self.facts.of(contact_id)
        if facts is None:
            raise NotFound(
                "CONTACT_NOT_FOUND", f"no facts for contact {contact_id}", contact_id=contact_id
            )
        return rules.format_rule(rule), rules.explain(rule, facts, now)

    async def preview(
        self, text: str, segment: Segment | None, sample_size: int, now: datetime
    ) -> Preview:
        rule = canonical(text)
        out = Preview(rules.format_rule(rule))
        current = await self.facts.members(segment.key) if segment is not None else set()
        async for chunk in self.facts.everyone():
            for f in chunk:
                value = rules.evaluate(rule, f, now)
                if value:
                    out.count += 1
                    if len(out.sample) < sample_size:
                        out.sample.append(f.contact_id)
                if segment is not None and value != (f.contact_id in current):
                    if value:
                        out.would_enter += 1
                    else:
                        out.would_exit += 1
        return out
