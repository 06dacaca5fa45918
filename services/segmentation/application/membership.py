"""Who enters and leaves which segment, decided from a contact's facts (pure: the engine in
adapters/engine.py loads the facts and writes what this decides).

Segments are evaluated in dependency order (a segment that reads ``in_segment('vip')`` after
``vip``), so a change of membership flows on in the same evaluation. Only the segments whose
fact groups changed are evaluated again, plus those that read a segment whose membership just
changed. For a rule that depends on the clock, ``next_change`` gives the instant its answer may
flip; the engine keeps it as a durable timer.

Membership events get ids derived from their cause and the segment's rule version, so running
the same evaluation again (a retried batch, a second replica's timer) writes nothing new.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.segmentation.domain import rules
from services.segmentation.domain.facts import Facts
from services.segmentation.domain.rules import FactGroup
from shared.domain.timestamps import timestamp_text
from shared.eventstore import NewEvent, StreamAppend, StreamState

NS = uuid.UUID("8d3c5e2a-6f41-4b7e-9a0c-2e5f7d1b3c94")  # never change: ids would repeat
ENTERED = "crm.segmentation.v1.ContactEnteredSegment"
EXITED = "crm.segmentation.v1.ContactExitedSegment"
# MembershipCause in protos/crm/segmentation/v1/events.proto
EVENT, TIME_PASSED, RULE_CHANGED, BACKFILL = (
    "MEMBERSHIP_CAUSE_EVENT",
    "MEMBERSHIP_CAUSE_TIME_PASSED",
    "MEMBERSHIP_CAUSE_RULE_CHANGED",
    "MEMBERSHIP_CAUSE_BACKFILL",
)


def stream_of(contact_id: str) -> str:
    return f"segmentmembership-{contact_id}"


@dataclass(frozen=True)
class SegmentRef:
    """What a membership event names of its segment."""

    segment_id: str
    key: str
    rule_version: int


@dataclass(frozen=True)
class ActiveSegment:
    segment_id: str
    key: str
    rule_version: int
    rule: rules.Rule
    groups: frozenset[FactGroup]
    reads_segments: frozenset[str]  # keys named by in_segment

    @property
    def ref(self) -> SegmentRef:
        return SegmentRef(self.segment_id, self.key, self.rule_version)

    @staticmethod
    def of(segment_id: str, key: str, rule_version: int, text: str) -> ActiveSegment:
        rule = rules.parse(text)
        return ActiveSegment(
            segment_id,
            key,
            rule_version,
            rule,
            rules.dependencies(rule),
            rules.segments_referenced(rule),
        )


def groups_of(rule_text: str) -> frozenset[FactGroup]:
    """The fact groups a rule (as stored: canonical text) reads."""
    return rules.dependencies(rules.parse(rule_text))


def in_dependency_order(segments: Iterable[ActiveSegment]) -> list[ActiveSegment]:
    """Each segment after the segments its rule names (cycles are refused when rules are
    saved; a name of no active segment is simply never true)."""
    by_key = {s.key: s for s in segments}
    done: dict[str, ActiveSegment] = {}

    def visit(s: ActiveSegment, path: frozenset[str]) -> None:
        if s.key in done or s.key in path:
            return
        for k in sorted(s.reads_segments):
            if k in by_key:
                visit(by_key[k], path | {s.key})
        done[s.key] = s

    for s in sorted(by_key.values(), key=lambda s: s.key):
        visit(s, frozenset())
    return list(done.values())


@dataclass(frozen=True)
class Change:
    contact_id: str
    segment: SegmentRef
    entered: bool


@dataclass(frozen=True)
class Decision:
    changes: list[Change]
    # segment id -> the next instant its answer may flip (None: no timer), for the evaluated
    # segments that depend on the clock
    timers: dict[str, datetime | None]
    after: Facts  # the facts with the memberships decided


def decide(
    facts: Facts,
    segments: Sequence[ActiveSegment],
    changed: set[FactGroup] | None,
    now: datetime,
) -> Decision:
    """Evaluate ``segments`` (in dependency order) for one contact whose ``changed`` fact
    groups moved (None: evaluate every segment). A segment that depends on the clock but
    not on the facts that moved keeps its timer: its answer flips only when the timer fires."""
    members = set(facts.segments)
    current = facts  # the facts with the memberships decided so far
    moved: set[str] = set()
    changes: list[Change] = []
    timers: dict[str, datetime | None] = {}
    for seg in segments:
        due = changed is None or bool(seg.groups & changed) or bool(seg.reads_segments & moved)
        if not due:
            continue
        value = rules.evaluate(seg.rule, current, now)
        if value != (seg.key in members):
            changes.append(Change(facts.contact_id, seg.ref, value))
            moved.add(seg.key)
            (members.add if value else members.discard)(seg.key)
            current = facts.in_segments(frozenset(members))
        if FactGroup.TIME in seg.groups:
            timers[seg.segment_id] = rules.next_change(seg.rule, current, now, value)
    return Decision(changes, timers, current)


def membership_appends(
    changes: Sequence[Change],
    cause: str,
    cause_id: str,
    effective: datetime,
    meta: Mapping[str, Any],
) -> list[StreamAppend]:
    """The appends recording ``changes``: one per contact, its events in order. Each event's id
    derives from its cause, the segment's rule version and the change, so running the same
    decision again writes nothing new. What every event shares is made once (a backfill
    writes tens of thousands)."""
    when, shared_meta = timestamp_text(effective), dict(meta)
    by_contact: dict[str, list[NewEvent]] = {}
    for change in changes:
        seg = change.segment
        data = {
            "contact_id": change.contact_id,
            "segment_id": seg.segment_id,
            "segment_key": seg.key,
            "rule_version": seg.rule_version,
            "cause": cause,
            "cause_event_id": cause_id if cause != TIME_PASSED else "",
            "effective_time": when,
        }
        key = f"{cause}\n{cause_id}\n{seg.segment_id}\n{seg.rule_version}"
        event_id = uuid.uuid5(NS, f"{key}\n{change.contact_id}\n{change.entered}")
        event = NewEvent(ENTERED if change.entered else EXITED, data, shared_meta, event_id)
        by_contact.setdefault(change.contact_id, []).append(event)
    return [StreamAppend(stream_of(c), events, StreamState.ANY) for c, events in by_contact.items()]
