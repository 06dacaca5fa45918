"""Days in the contact's time zone: ``today``, the start of a day, anniversaries.

- The contact's zone is its ``time_zone`` (an IANA name); '' — or a name this machine does not
  know — is UTC.
- ``today`` is the contact's local date now; as a time it is the start of that day: local
  midnight, resolved as PostgreSQL resolves a local time, so both evaluators agree: a midnight
  that a clock change skipped is read with the offset before the change (the day starts when
  the clocks jump), a midnight that happens twice is the later one.
- ``anniversary(t)``: the month and day of ``t`` (read in UTC: a date stored as a time is
  midnight UTC of that date), next on or after today in the contact's zone; Feb 29 falls on
  Feb 28 in other years.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ONE_MICROSECOND = timedelta(microseconds=1)
LATEST = datetime.max.replace(tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)


@lru_cache(maxsize=1024)
def zone(name: str) -> tzinfo:
    """The zone of a ``time_zone`` fact."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, malformed, unreadable
        return UTC


def local_date(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def day_start(day: date, tz: tzinfo) -> datetime:
    """The instant ``day`` starts for ``today`` and ``date '…'`` comparisons (PostgreSQL's
    ``day::timestamp AT TIME ZONE tz``)."""
    naive = datetime.combine(day, time())
    before, after = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if before.utcoffset() == after.utcoffset():
        return before.astimezone(UTC)
    repeated = before.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive
    return (after if repeated else before).astimezone(UTC)


def date_begins(day: date, tz: tzinfo) -> datetime:
    """The first instant whose local date is ``day`` (when ``today`` becomes ``day``)."""
    naive = datetime.combine(day, time())
    candidates = [naive.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1)]
    exact = [c for c in candidates if local_date(c, tz) == day]
    return min(exact or candidates)


def shifted(at: datetime, seconds: int) -> datetime:
    """``at`` plus ``seconds``, held at the ends of what a datetime can be."""
    try:
        return at + timedelta(seconds=seconds)
    except OverflowError:
        return LATEST if seconds > 0 else EARLIEST


def plus_days(day: date, days: int) -> date | None:
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return None


def occurrence(month: int, day: int, year: int) -> date:
    """``month``/``day`` in ``year``; Feb 29 is Feb 28 in a year without it."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def anniversary(value: datetime, today: date) -> date | None:
    """The next occurrence of ``value``'s month and day (in UTC) on or after ``today``."""
    utc = value.astimezone(UTC)
    this = occurrence(utc.month, utc.day, today.year)
    if this >= today:
        return this
    return occurrence(utc.month, utc.day, today.year + 1) if today.year < 9999 else None
