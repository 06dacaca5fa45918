"""What a field, an operand and a value are for one contact at one instant (Python side; the
SQL compiler computes the same from the facts tables).

Unset is ``None``: a comparison with an unset operand is false, whatever the operator (so
``consent.email != 'subscribed'`` is false when consent was never given, while ``NOT
consent.email = 'subscribed'`` is true); ``IS SET`` / ``IS NOT SET`` test presence. A value of
another type than the one compared with (an attribute holding text, compared with a number)
counts as unset too.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, tzinfo

from services.segmentation.domain.facts import Facts, OrderFact
from services.segmentation.domain.rules import clock
from services.segmentation.domain.rules.ast import (
    Anniversary,
    AtTime,
    Boolean,
    Field,
    Now,
    Number,
    OnDate,
    Relative,
    Scalar,
    Text,
    Today,
)
from services.segmentation.domain.rules.fields import split

# What a field holds: a number, text, bool, time, date (anniversary) or tags.
Actual = int | float | str | bool | datetime | date | frozenset[str]


_UNKNOWN = object()


def live_orders(facts: Facts) -> list[OrderFact]:
    """The orders that count: not cancelled."""
    live: list[OrderFact] | None = facts.memo.get(live_orders)
    if live is None:
        live = facts.memo[live_orders] = [o for o in facts.orders if not o.cancelled]
    return live


def field_value(facts: Facts, path: str) -> Actual | None:
    """The field's value for the contact, None when unset."""
    value = facts.memo.get(path, _UNKNOWN)
    if value is _UNKNOWN:
        value = facts.memo[path] = _field_value(facts, path)
    return value


def _field_value(facts: Facts, path: str) -> Actual | None:
    head, key = split(path)
    if head == "orders_count":
        return len(live_orders(facts))
    if head == "refunds_count":
        return sum(1 for o in facts.orders if o.refunded > 0)
    if head in ("first_order_at", "last_order_at"):
        times = [o.place_time for o in live_orders(facts)]
        return (min if head == "first_order_at" else max)(times) if times else None
    if head.startswith("rfm_"):
        score = facts.rfm.get(key)
        return None if score is None else getattr(score, head[4:])
    if head in ("revenue", "aov"):
        return money(live_orders(facts), key, average=head == "aov")
    if head == "created_at":
        return facts.created_at
    if head == "tags":
        return facts.tags or None
    if head in ("locale", "time_zone", "email_domain"):
        text: str = getattr(facts, head)
        return text or None
    if head == "archived":
        return facts.archived
    if head == "attributes":
        return facts.attributes.get(key)
    if head == "consent":
        return facts.consent.get(key) or None
    if head == "suppressed":
        return key in facts.suppressed
    if head == "recovered":
        return recovered(facts)
    raise ValueError(f"unknown field {path!r}")


def money(orders: Iterable[OrderFact], currency: str, average: bool) -> int | None:
    """Revenue (total - refunded) in ``currency``, 0 without orders; or the average order
    value, rounded half up, None without orders."""
    amounts = [o.total - o.refunded for o in orders if o.currency == currency]
    if not average:
        return sum(amounts)
    if not amounts:
        return None
    n = len(amounts)
    return (2 * sum(amounts) + n) // (2 * n)


def recovered(facts: Facts) -> bool | None:
    """Was the most recently abandoned cart recovered? (any of them, when several share the
    latest abandonment time); None when no cart was ever abandoned."""
    times = [c.abandoned_time for c in facts.carts if c.abandoned_time is not None]
    if not times:
        return None
    latest = max(times)
    return any(c.recovered for c in facts.carts if c.abandoned_time == latest)


def operand_value(left: Field | Anniversary, facts: Facts, now: datetime) -> Actual | None:
    if isinstance(left, Field):
        return field_value(facts, left.path)
    base = field_value(facts, left.field.path)
    if not isinstance(base, datetime):
        return None
    return clock.anniversary(base, today(facts, now))


def tz_of(facts: Facts) -> tzinfo:
    return clock.zone(facts.time_zone)


def today(facts: Facts, now: datetime) -> date:
    return clock.local_date(now, tz_of(facts))


def resolve(v: Scalar, facts: Facts, now: datetime, as_date: bool) -> Actual | None:
    """The concrete value ``v`` stands for: a datetime in time comparisons, a date when
    compared with an anniversary (``as_date``); None when it falls outside the calendar."""
    if isinstance(v, Text | Number | Boolean):
        return v.value
    if as_date:
        local = today(facts, now)
        if isinstance(v, Today):
            return local
        if isinstance(v, Relative):
            return clock.plus_days(local, v.amount * (v.unit.days or 0))
        return v.value if isinstance(v, OnDate) else None
    if isinstance(v, Relative):
        return clock.shifted(now, v.seconds)
    if isinstance(v, Now):
        return now
    if isinstance(v, Today):
        return clock.day_start(today(facts, now), tz_of(facts))
    if isinstance(v, OnDate):
        return clock.day_start(v.value, tz_of(facts))
    if isinstance(v, AtTime):
        return v.value
    return None


def kind(x: object) -> str:
    """Which values compare with each other: bool, number, text, time, date, tags."""
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int | float):
        return "number"
    if isinstance(x, str):
        return "text"
    if isinstance(x, datetime):
        return "time"
    if isinstance(x, date):
        return "date"
    return "tags"
