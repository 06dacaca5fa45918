"""A segment's definition: its key, name and rule, versioned by events (pure decide/evolve).

The rule arrives already parsed, checked and in canonical text (the application parses it
with domain/rules); here a segment only records it. Every rule change is a new rule version,
and membership events name the version that decided them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.domain.errors import Invalid, Precondition

PREFIX = "crm.segmentation.v1."
CREATED = PREFIX + "SegmentCreated"
UPDATED = PREFIX + "SegmentUpdated"
ARCHIVED = PREFIX + "SegmentArchived"

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_RULE = 8000

Event = tuple[str, dict[str, Any]]


def stream_of(segment_id: str) -> str:
    return f"segment-{segment_id}"


def key_stream(key: str) -> str:
    """The stream whose first event claims a key: two segments never share one."""
    return f"segmentkey-{key}"


@dataclass(frozen=True, slots=True)
class Segment:
    segment_id: str
    key: str
    name: str
    description: str
    rule: str
    rule_version: int
    archived: bool = False
    version: int = -1
    create_time: datetime | None = None
    update_time: datetime | None = None


def evolve(
    state: Segment | None, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Segment:
    if type_ == CREATED:
        return Segment(
            segment_id=data["segment_id"],
            key=data["key"],
            name=data.get("name", ""),
            description=data.get("description", ""),
            rule=data["rule"],
            rule_version=int(data["rule_version"]),
            version=version,
            create_time=at,
            update_time=at,
        )
    assert state is not None, f"{type_} before SegmentCreated"
    if type_ == UPDATED:
        return replace(
            state,
            name=data.get("name", ""),
            description=data.get("description", ""),
            rule=data["rule"],
            rule_version=int(data["rule_version"]),
            version=version,
            update_time=at,
        )
    if type_ == ARCHIVED:
        return replace(state, archived=True, version=version, update_time=at)
    return replace(state, version=version)


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Segment | None:
    state = None
    for type_, data, at, version in events:
        state = evolve(state, type_, data, at, version)
    return state


def _check(key: str | None, name: str, description: str, rule: str) -> None:
    problems: list[tuple[str, str, str]] = []
    if key is not None and not KEY.match(key):
        problems.append(("key", "INVALID_KEY", "1..64 of a-z 0-9 _ -, starting with a-z or 0-9"))
    if not name.strip() or len(name) > MAX_NAME:
        problems.append(("name", "INVALID_NAME", f"1..{MAX_NAME} characters"))
    if len(description) > MAX_DESCRIPTION:
        problems.append(("description", "INVALID_DESCRIPTION", f"at most {MAX_DESCRIPTION}"))
    if not rule.strip() or len(rule) > MAX_RULE:
        problems.append(("rule", "INVALID_RULE", f"1..{MAX_RULE} characters"))
    if problems:
        raise Invalid(problems)


def decide_create(segment_id: str, key: str, name: str, description: str, rule: str) -> list[Event]:
    _check(key, name, description, rule)
    data = {
        "segment_id": segment_id,
        "key": key,
        "name": name.strip(),
        "description": description,
        "rule": rule,
        "rule_version": 1,
    }
    return [(CREATED, data)]


def decide_update(state: Segment, name: str, description: str, rule: str) -> list[Event]:
    """A new rule version when anything changed; nothing otherwise."""
    if state.archived:
        raise Precondition("SEGMENT_ARCHIVED", f"segment {state.key} is archived")
    _check(None, name, description, rule)
    if (name.strip(), description, rule) == (state.name, state.description, state.rule):
        return []
    data = {
        "segment_id": state.segment_id,
        "key": state.key,
        "name": name.strip(),
        "description": description,
        "rule": rule,
        "rule_version": state.rule_version + (rule != state.rule),
    }
    return [(UPDATED, data)]


def decide_archive(state: Segment) -> list[Event]:
    if state.archived:
        return []
    return [(ARCHIVED, {"segment_id": state.segment_id, "key": state.key})]
