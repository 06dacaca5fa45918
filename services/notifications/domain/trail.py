"""A message as its events tell it (pure): what it is, where it stands, every decision and every
delivery and tracking step in order. The command runner folds it; the read model keeps the
same shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.notifications.domain import decision as d
from services.notifications.domain import tracking

Step = tuple[datetime, str, dict[str, Any]]  # (recorded at, event type, data)


@dataclass(frozen=True, slots=True)
class Trail:
    message_id: str
    contact_id: str
    channel: str
    kind: str
    status: str  # a MessageStatus name
    test: bool
    decisions: tuple[dict[str, Any], ...]
    delivery: tuple[Step, ...] = ()
    version: int = -1
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def last_decision(self) -> Mapping[str, Any]:
        return self.decisions[-1]

    @property
    def attempt(self) -> int:
        """The last attempt dispatched (0: none yet)."""
        tried = [int(data.get("attempt", 0)) for _, t, data in self.delivery if t == d.DISPATCHED]
        return max(tried, default=0)


def evolve(
    state: Trail | None, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Trail:
    data = dict(data)
    if type_ == d.DECIDED:
        if state is None:
            return Trail(
                message_id=data["message_id"],
                contact_id=data.get("contact_id", ""),
                channel=data.get("channel", ""),
                kind=data.get("kind", ""),
                status=d.status_after(type_, data),
                test=bool(data.get("test", False)),
                decisions=(data,),
                version=version,
                create_time=at,
                update_time=at,
            )
        return replace(
            state,
            contact_id=data.get("contact_id", state.contact_id),
            status=d.status_after(type_, data),
            decisions=(*state.decisions, data),
            version=version,
            update_time=at,
        )
    assert state is not None, f"{type_} before MessageDecided"
    if type_ in d.DELIVERY:
        return replace(
            state,
            status=d.status_after(type_, data),
            delivery=(*state.delivery, (at, type_, data)),
            version=version,
            update_time=at,
        )
    if type_ in tracking.EVENTS:  # opens, clicks, unsubscriptions: the status stays
        return replace(
            state, delivery=(*state.delivery, (at, type_, data)), version=version, update_time=at
        )
    return replace(state, version=version)


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Trail | None:
    state = None
    for type_, data, at, version in events:
        state = evolve(state, type_, data, at, version)
    return state
