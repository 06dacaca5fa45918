"""Date triggers, pure: when a flow's date trigger fires next for a contact.

A date trigger names a contact attribute holding a date (``birthday``), a number of days after
it (negative: before), a local time of day, and whether it recurs every year. An occurrence is
the attribute's date (its anniversary in a given year, when yearly) plus the offset, at the local
time in the contact's zone. Rules, written down here because a user meets them:

- Feb 29 in a year without one is Feb 28 (a leap-day birthday is celebrated the day before
  March), then the offset is added.
- A local time a DST jump skips (02:30 on a spring-forward night) is read with the offset before
  the jump: the fire moves forward by the gap (03:30 local). A local time the clock goes through
  twice (an autumn night) fires at its first occurrence, once.
- The next fire is strictly after a given instant (the last fire, or the instant the date became
  known): an occurrence that has passed is not caught up, and none fires twice.
- The value: an ISO date ("1990-05-17"), or a timestamp (the attribute's timestamp value, or an
  ISO date-time text), read as its UTC date. Anything else is no date: the trigger never fires.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

from services.notifications.domain.flows.definition import DateTrigger

MIDNIGHT = time(0, 0)


class Fire(NamedTuple):
    """One occurrence of a date trigger: its local day (the trigger key's date) and instant."""

    day: date
    at: datetime  # UTC


def date_of(value: Any) -> date | None:
    """The date an attribute value holds, or None (see the module's rules)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found.astimezone(UTC).date() if found.tzinfo else found.date()


def anniversary(value: date, year: int) -> date:
    """``value``'s day in ``year`` (Feb 29 → Feb 28 in a year without one)."""
    try:
        return value.replace(year=year)
    except ValueError:  # only Feb 29 fails
        return date(year, 2, 28)


def local_instant(day: date, wall: time, tz: tzinfo) -> datetime:
    """The UTC instant the contact's clock reads ``wall`` on ``day`` (a skipped wall time read
    with the offset before the jump, a repeated one at its first occurrence)."""
    return datetime.combine(day, wall, tzinfo=tz).replace(fold=0).astimezone(UTC)


def occurrences(value: date, trigger: DateTrigger, around: int) -> list[date]:
    """The occurrence days near the year ``around`` (in order): the date itself plus the offset
    when not yearly; each year's anniversary plus the offset from two years before to two after
    (an offset of at most 366 days moves an anniversary by a year at most)."""
    offset = timedelta(days=trigger.offset_days)
    years = range(around - 2, around + 3) if trigger.yearly else (value.year,)
    found = []
    for y in years:
        try:  # a day beyond the calendar (near year 1 or 9999) is left out
            found.append((anniversary(value, y) if trigger.yearly else value) + offset)
        except (ValueError, OverflowError):
            continue
    return found


def next_fire(value: date, trigger: DateTrigger, tz: tzinfo, after: datetime) -> Fire | None:
    """The first occurrence strictly after ``after``, or None (a one-off date that has passed;
    a day beyond the calendar)."""
    wall = trigger.local_time or MIDNIGHT
    year = after.astimezone(tz).year
    for _ in range(2):  # a yearly trigger always has one within the next window
        for day in occurrences(value, trigger, year):
            try:
                at = local_instant(day, wall, tz)
            except (ValueError, OverflowError):
                continue
            if at > after:
                return Fire(day, at)
        if not trigger.yearly:
            return None
        year += 4
    return None


def occurrence_year(day: date, offset_days: int) -> int:
    """The year of the anniversary an occurrence on ``day`` belongs to (its day less the
    offset): one per occurrence, and it says nothing of the date itself."""
    return (day - timedelta(days=offset_days)).year


def trigger_key(attribute: str, day: date, offset_days: int) -> str:
    """A run's trigger key for an occurrence: one run per (flow, contact, occurrence). It names
    the anniversary's year, not the day: run events are not sealed, and a birthday's day and
    month are the contact's personal data."""
    return f"{attribute}:{occurrence_year(day, offset_days)}"
