"""A campaign's life, pure decide/evolve: drafted, scheduled (now, at an instant, or at a local
time in each recipient's zone), sending, paused and resumed, completed or cancelled. Each
change an event; a change the state does not allow is FAILED_PRECONDITION naming the state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.notifications.domain.campaigns import definition as defs
from shared.domain.errors import Invalid, Precondition

PREFIX = "crm.notifications.v1."
CREATED = PREFIX + "CampaignCreated"  # a draft, with its definition
SCHEDULED = PREFIX + "CampaignScheduled"
STARTED = PREFIX + "CampaignStarted"  # the audience frozen: its size and digest
PAUSED = PREFIX + "CampaignPaused"
RESUMED = PREFIX + "CampaignResumed"
COMPLETED = PREFIX + "CampaignCompleted"
CANCELLED = PREFIX + "CampaignCancelled"
DRAFT, WAITING, SENDING, HALTED, DONE, STOPPED = (
    "draft",
    "scheduled",
    "sending",
    "paused",
    "completed",
    "cancelled",
)
Event = tuple[str, dict[str, Any]]

# Which state each change leaves, and the states it may be asked in.
_MOVES: dict[str, tuple[str, frozenset[str]]] = {
    SCHEDULED: (WAITING, frozenset({DRAFT, WAITING})),
    STARTED: (SENDING, frozenset({WAITING})),
    PAUSED: (HALTED, frozenset({WAITING, SENDING})),
    RESUMED: (SENDING, frozenset({HALTED})),
    COMPLETED: (DONE, frozenset({SENDING})),
    CANCELLED: (STOPPED, frozenset({DRAFT, WAITING, SENDING, HALTED})),
}

# Asked again when already so: nothing to do.
_ALREADY = {(PAUSED, HALTED), (CANCELLED, STOPPED), (RESUMED, WAITING), (RESUMED, SENDING)}


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    state: str = DRAFT
    send_at: datetime | None = None  # the instant, or the day of a local-time send
    local_time: str = ""  # HH:MM in each recipient's zone, when the send is local
    audience_size: int = 0
    audience_digest: str = ""
    paused_from: str = ""  # the state a pause interrupted (scheduled or sending)
    definition: Mapping[str, Any] = field(default_factory=dict)  # the JSON form, as saved
    schedule: Mapping[str, Any] = field(default_factory=dict)  # CampaignScheduled's data
    start_time: datetime | None = None  # the audience's as-of instant
    tally: Mapping[str, Any] = field(default_factory=dict)
    version: int = -1  # the stream version: the etag
    create_time: datetime | None = None
    update_time: datetime | None = None


def stream_of(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


def decide_create(campaign_id: str, definition: Mapping[str, Any]) -> list[Event]:
    """A draft; INVALID_ARGUMENT listing every problem of the definition."""
    problems = defs.problems(definition)
    if problems:
        raise Invalid([(f"definition.{f}", reason, text) for f, reason, text in problems])
    return [(CREATED, {"campaign_id": campaign_id, "definition": dict(definition)})]


def decide_schedule(state: Campaign, schedule: defs.Schedule) -> list[Event]:
    return decide(state, SCHEDULED, schedule.to_data())


def decide(state: Campaign, change: str, data: Mapping[str, Any]) -> list[Event]:
    """The events of ``change`` (an event type above) in ``state``: none when it is already
    so (a repeated pause, resume or cancel), else one; refused when the state forbids it."""
    _, allowed = _MOVES[change]
    if (change, state.state) in _ALREADY:
        return []
    if state.state not in allowed:
        name = change.rsplit(".", 1)[1]
        raise Precondition(
            "CAMPAIGN_STATE", f"{name} is not possible when the campaign is {state.state}"
        )
    return [(change, {"campaign_id": state.campaign_id, **data})]


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def evolve(state: Campaign, type_: str, data: Mapping[str, Any]) -> Campaign:
    target, _ = _MOVES[type_]
    if type_ == SCHEDULED:
        return replace(
            state,
            state=target,
            send_at=_instant(data.get("send_time")),
            local_time=data.get("local_time", ""),
            schedule=dict(data),
        )
    if type_ == STARTED:
        return replace(
            state,
            state=target,
            audience_size=int(data["audience_size"]),
            audience_digest=data["audience_digest"],
            start_time=_instant(data.get("start_time")),
        )
    if type_ == COMPLETED:
        return replace(state, state=target, tally=dict(data.get("tally", {})))
    if type_ == PAUSED:
        return replace(state, state=target, paused_from=state.state)
    if type_ == RESUMED:
        return replace(state, state=state.paused_from or target, paused_from="")
    return replace(state, state=target)


def apply(
    state: Campaign | None, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Campaign:
    """``evolve`` for the command runner: the stream's version and times kept."""
    if type_ == CREATED:
        return Campaign(
            data["campaign_id"],
            definition=dict(data["definition"]),
            version=version,
            create_time=at,
            update_time=at,
        )
    assert state is not None, f"{type_} before CampaignCreated"
    return replace(evolve(state, type_, data), version=version, update_time=at)


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Campaign | None:
    state = None
    for type_, data, at, version in events:
        state = apply(state, type_, data, at, version)
    return state
