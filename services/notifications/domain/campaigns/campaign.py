"""A campaign's life, pure decide/evolve: drafted, scheduled (now, at an instant, or at a local
time in each recipient's zone), sending, paused and resumed, completed or cancelled. Each
change an event; a change the state does not allow is FAILED_PRECONDITION naming the state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.domain.errors import Precondition

PREFIX = "crm.notifications.v1."
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


def evolve(state: Campaign, type_: str, data: Mapping[str, Any]) -> Campaign:
    target, _ = _MOVES[type_]
    if type_ == SCHEDULED:
        at = data.get("send_time")
        return replace(
            state,
            state=target,
            send_at=datetime.fromisoformat(at) if at else None,
            local_time=data.get("local_time", ""),
        )
    if type_ == STARTED:
        return replace(
            state,
            state=target,
            audience_size=int(data["audience_size"]),
            audience_digest=data["audience_digest"],
        )
    if type_ == PAUSED:
        return replace(state, state=target, paused_from=state.state)
    if type_ == RESUMED:
        return replace(state, state=state.paused_from or target, paused_from="")
    return replace(state, state=target)
