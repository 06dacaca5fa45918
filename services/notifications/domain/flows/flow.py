"""A flow as an aggregate (pure decide/evolve): its key, its state (active, paused, archived)
and every version of its definition, each kept in its JSON form. A run records the version it
started on and finishes on it, whatever is saved later (runs come with the next part)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.notifications.domain.flows.check import checked
from services.notifications.domain.flows.definition import Flow as Definition
from shared.domain.errors import Invalid, NotFound, Precondition

PREFIX = "crm.notifications.v1."
CREATED = PREFIX + "FlowCreated"
REVISED = PREFIX + "FlowRevised"
PAUSED = PREFIX + "FlowPaused"
RESUMED = PREFIX + "FlowResumed"
ARCHIVED = PREFIX + "FlowArchived"
KEY_CLAIMED = PREFIX + "FlowKeyClaimed"  # the key stream's only event
ACTIVE, PAUSED_STATE, ARCHIVED_STATE = (
    "FLOW_STATE_ACTIVE",
    "FLOW_STATE_PAUSED",
    "FLOW_STATE_ARCHIVED",
)

Event = tuple[str, dict[str, Any]]


def stream_of(flow_id: str) -> str:
    return f"flow-{flow_id}"


def key_stream(key: str) -> str:
    """The stream whose first event claims a key: two flows never share one."""
    return f"flowkey-{key}"


@dataclass(frozen=True, slots=True)
class FlowVersion:
    version: int
    definition: Mapping[str, Any]  # the JSON form, as saved
    create_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class FlowState:
    flow_id: str
    key: str
    versions: tuple[FlowVersion, ...]
    state: str = ACTIVE
    version: int = -1  # the stream version: the etag
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def latest(self) -> FlowVersion:
        return self.versions[-1]

    def at(self, version: int) -> FlowVersion:
        """Definition version ``version`` (0: the latest); NotFound when there is none."""
        if version == 0:
            return self.latest
        if 1 <= version <= len(self.versions):
            return self.versions[version - 1]
        raise NotFound(
            "FLOW_VERSION_NOT_FOUND",
            f"flow {self.key} has versions 1..{len(self.versions)}",
            flow_id=self.flow_id,
        )


def definition_of(d: Mapping[str, Any]) -> Definition:
    """A definition's JSON form, checked: INVALID_ARGUMENT listing every problem."""
    flow, problems = checked(d)
    if problems:
        raise Invalid([(f"definition.{f}", reason, text) for f, reason, text in problems])
    return flow


def decide_create(flow_id: str, definition: Mapping[str, Any]) -> list[Event]:
    flow = definition_of(definition)
    data = {"flow_id": flow_id, "key": flow.key, "version": 1, "definition": dict(definition)}
    return [(CREATED, data)]


def _open(state: FlowState) -> None:
    if state.state == ARCHIVED_STATE:
        raise Precondition("FLOW_ARCHIVED", f"flow {state.key} is archived", flow_id=state.flow_id)


def decide_update(state: FlowState, definition: Mapping[str, Any]) -> list[Event]:
    """A new version when the definition changed; nothing when it is the same."""
    _open(state)
    flow = definition_of(definition)
    if flow.key != state.key:
        raise Invalid([("definition.key", "FLOW_KEY_CHANGED", f"this flow's key is {state.key}")])
    if dict(definition) == dict(state.latest.definition):
        return []
    version = len(state.versions) + 1
    data = {"flow_id": state.flow_id, "key": state.key, "version": version}
    return [(REVISED, {**data, "definition": dict(definition)})]


def _change(state: FlowState, type_: str) -> list[Event]:
    return [(type_, {"flow_id": state.flow_id, "key": state.key})]


def decide_pause(state: FlowState) -> list[Event]:
    """Paused: no run starts and no step runs until resumed (idempotent)."""
    _open(state)
    return [] if state.state == PAUSED_STATE else _change(state, PAUSED)


def decide_resume(state: FlowState) -> list[Event]:
    _open(state)
    return [] if state.state == ACTIVE else _change(state, RESUMED)


def decide_archive(state: FlowState) -> list[Event]:
    """Archived for good: runs end, the key stays taken (idempotent)."""
    return [] if state.state == ARCHIVED_STATE else _change(state, ARCHIVED)


_STATES = {PAUSED: PAUSED_STATE, RESUMED: ACTIVE, ARCHIVED: ARCHIVED_STATE}


def evolve(
    state: FlowState | None, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> FlowState:
    if type_ == CREATED:
        first = FlowVersion(1, data["definition"], at)
        return FlowState(data["flow_id"], data["key"], (first,), ACTIVE, version, at, at)
    assert state is not None, f"{type_} before FlowCreated"
    if type_ == REVISED:
        added = FlowVersion(int(data["version"]), data["definition"], at)
        return replace(state, versions=(*state.versions, added), version=version, update_time=at)
    if type_ in _STATES:
        return replace(state, state=_STATES[type_], version=version, update_time=at)
    return replace(state, version=version)


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> FlowState | None:
    state = None
    for type_, data, at, version in events:
        state = evolve(state, type_, data, at, version)
    return state
