"""Attribution (pure): which orders a message is credited with, and the rates of a report.

A touch is a contact's click on a message (or, with the touch "open", an open or a click); an
order the contact places within the window after its touch is credited to the message of its
last touch before the order (last touch), and through it to the message's flow step or campaign
variant. An order is credited once. Times are the events' own (a click's recording, the order's
place_time), never the clock, so that a rebuild credits the same orders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notifications.domain.tracking import CLICKED, OPENED

CLICK = "click"
OPEN = "open"
TOUCHES = (CLICK, OPEN)
DEFAULT_WINDOW = timedelta(days=5)


@dataclass(frozen=True, slots=True)
class Rule:
    window: timedelta = DEFAULT_WINDOW
    touch: str = CLICK

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError("the attribution window must be above 0")
        if self.touch not in TOUCHES:
            raise ValueError(f"the touch must be one of {', '.join(TOUCHES)}, not {self.touch!r}")

    @property
    def touch_types(self) -> tuple[str, ...]:
        """The message events that are touches under this rule."""
        return (CLICKED,) if self.touch == CLICK else (CLICKED, OPENED)

    def counts(self, touched: datetime, ordered: datetime) -> bool:
        """Whether an order placed at ``ordered`` falls in the window of a touch at ``touched``
        (the touch at or before the order, the order at most ``window`` after it)."""
        return touched <= ordered <= touched + self.window


@dataclass(frozen=True, slots=True)
class Touch:
    at: datetime
    message_id: str


def last_touch(touches: Iterable[Touch], ordered: datetime, rule: Rule) -> str | None:
    """The message credited with an order placed at ``ordered``: its contact's latest touch
    that counts (ties: the greatest message id, for a stable answer), or None."""
    best: Touch | None = None
    for t in touches:
        if rule.counts(t.at, ordered) and (
            best is None or (t.at, t.message_id) > (best.at, best.message_id)
        ):
            best = t
    return best.message_id if best is not None else None


def rate(count: int, delivered: int) -> float:
    """A report's rate: ``count`` over the messages delivered, 0 when none was."""
    return count / delivered if delivered > 0 else 0.0
