"""Explanations and dry runs: why a contact is (not) in a segment, and what a draft rule would
select, from the engine's facts and the membership events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.segmentation.adapters.facts_queries import FactsQueries
from services.segmentation.application import membership as m
from services.segmentation.application.segments import canonical
from services.segmentation.domain import rules
from services.segmentation.domain.segment import Segment
from shared.domain.timestamps import timestamp_from_text
from shared.eventstore import EventStore, RecordedEvent


@dataclass(frozen=True)
class Explained:
    decided_by: RecordedEvent | None  # the membership event in force at the instant asked
    now: rules.Explanation | None  # the current rule on the current facts


@dataclass
class Preview:
    rule: str
    count: int = 0
    sample: list[str] = field(default_factory=list)
    would_enter: int = 0
    would_exit: int = 0


class Insight:
    def __init__(self, store: EventStore, facts: FactsQueries) -> None:
        self.store, self.facts = store, facts

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
        return Explained(deciding[-1] if deciding else None, tree)

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
