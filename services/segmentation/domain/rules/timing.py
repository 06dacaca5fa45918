"""``next_change``: when a rule's answer for a contact changes by the clock alone.

The answer is a function of time that can only change at a few instants, its candidates:

- ``field OP -30d`` (or ``+7d``, ``now``): when now - 30d reaches the field's value, or passes
  it by one microsecond (instants are microseconds, as in PostgreSQL);
- ``field OP today``: when the contact's local date becomes the field's date or the next one;
- a window (``within 90d``): when an order, purchase or abandonment enters it (its own time)
  and when it leaves (its time + 90d);
- ``anniversary(f) OP today + k``: when the days left until the anniversary reach k or k - 1,
  and the day after the anniversary (when it moves to the next year);
- ``anniversary(f) OP date '…'``: the days after the occurrences around that date.

``next_change`` walks the candidates in order and returns the first at which ``evaluate``
differs from its value at ``now``: the answer is the same on [now, next_change) and differs
at next_change; None when it never changes. Anniversaries come back every year: once ten years
of them (longer than any leap-year pattern) change nothing, they are skipped until the next
candidate of another kind. After 10,000 candidates without a change, the last one is returned
(re-evaluate then), so the cost stays bounded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.segmentation.domain.facts import Facts
from services.segmentation.domain.rules import clock
from services.segmentation.domain.rules.ast import (
    AbandonedCart,
    Anniversary,
    Comparison,
    Field,
    Now,
    OnDate,
    PlacedOrder,
    Purchased,
    Relative,
    Rule,
    Today,
    bounds,
    walk,
)
from services.segmentation.domain.rules.compiled import evaluate
from services.segmentation.domain.rules.evaluate import count_passes, excluded, purchase_rows
from services.segmentation.domain.rules.values import field_value, live_orders, today, tz_of

HORIZON = timedelta(days=3653)
MAX_STEPS = 10_000


def next_change(
    rule: Rule, facts: Facts, now: datetime, start: bool | None = None
) -> datetime | None:
    """The earliest instant after ``now`` at which ``evaluate(rule, facts, ·)`` differs from
    ``evaluate(rule, facts, now)`` (``start``, when the caller knows it), with no new facts;
    None if never."""
    if start is None:
        start = evaluate(rule, facts, now)
    if excluded(facts):
        return None
    timed, yearly = _timed_nodes(rule)
    fixed = sorted({c for c in fixed_candidates(rule, facts, timed) if c > now})
    at, anchor, i = now, now, 0
    for _ in range(MAX_STEPS):
        while i < len(fixed) and fixed[i] <= at:
            i += 1
        options = [fixed[i]] if i < len(fixed) else []
        cyclic = [c for cmp in yearly for c in anniversary_candidates(cmp, facts, at) if c > at]
        if cyclic and min(cyclic) - anchor <= HORIZON:
            options.append(min(cyclic))
        if not options:
            return None
        at = min(options)
        if evaluate(rule, facts, at) != start:
            return at
        if i < len(fixed) and at == fixed[i]:
            anchor = at
    return at


_Nodes = tuple[tuple[Rule, ...], tuple[Comparison, ...]]
_NODES: dict[int, tuple[Rule, _Nodes]] = {}


def _timed_nodes(rule: Rule) -> _Nodes:
    """The conditions of ``rule`` that can change with time, and its anniversary comparisons;
    kept per rule (by identity: the engine evaluates the same parsed rules again and again)."""
    known = _NODES.get(id(rule))
    if known is not None and known[0] is rule:
        return known[1]
    nodes = walk(rule)
    timed = tuple(
        n
        for n in nodes
        if (isinstance(n, Comparison) and isinstance(n.left, Field | Anniversary))
        or (isinstance(n, PlacedOrder | Purchased | AbandonedCart) and n.within)
    )
    yearly = tuple(
        n for n in nodes if isinstance(n, Comparison) and isinstance(n.left, Anniversary)
    )
    if len(_NODES) >= 4096:
        _NODES.clear()
    _NODES[id(rule)] = (rule, (timed, yearly))
    return timed, yearly


def fixed_candidates(
    rule: Rule, facts: Facts, nodes: tuple[Rule, ...] | None = None
) -> set[datetime]:
    """Every instant at which a condition of ``rule`` other than an anniversary can change
    (``nodes``: its conditions that can, when known)."""
    out: set[datetime] = set()
    for node in walk(rule) if nodes is None else nodes:
        if isinstance(node, Comparison) and isinstance(node.left, Field):
            out.update(_comparison_candidates(node, node.left, facts))
        elif isinstance(node, Comparison) and isinstance(node.left, Anniversary):
            out.update(_dated_anniversary_candidates(node, node.left, facts))
        elif isinstance(node, PlacedOrder | Purchased | AbandonedCart) and node.within:
            out.update(_window_candidates(node, facts, node.within))
    return out


def _comparison_candidates(c: Comparison, left: Field, facts: Facts) -> list[datetime]:
    v = field_value(facts, left.path)
    if not isinstance(v, datetime):
        return []
    out: list[datetime] = []
    tz = tz_of(facts)
    for b in bounds(c.value):
        if isinstance(b, Relative | Now):
            edge = clock.shifted(v, -(b.seconds if isinstance(b, Relative) else 0))
            out.extend(_and_next(edge))
        elif isinstance(b, Today):
            day = clock.local_date(v, tz)
            out.extend(clock.date_begins(d, tz) for d in (day, clock.plus_days(day, 1)) if d)
    return out


def _window_candidates(
    node: PlacedOrder | Purchased | AbandonedCart, facts: Facts, within: Relative
) -> list[datetime]:
    if isinstance(node, PlacedOrder):
        times = [
            o.place_time
            for o in live_orders(facts)
            if (not node.currency or o.currency == node.currency)
            and (node.total is None or count_passes(node.total, o.total))
        ]
    elif isinstance(node, Purchased):
        cancelled = {o.order_id for o in facts.orders if o.cancelled}
        times = [p.time for p in purchase_rows(node, facts) if p.order_id not in cancelled]
    else:
        times = [c.abandoned_time for c in facts.carts if c.abandoned_time is not None]
    return [x for t in times for x in (t, clock.shifted(t, within.seconds))]


def _dated_anniversary_candidates(c: Comparison, left: Anniversary, facts: Facts) -> list[datetime]:
    """``anniversary(f) OP date '…'`` changes only when the anniversary moves past an
    occurrence next to that date: the days after the occurrences around it."""
    base = field_value(facts, left.field.path)
    if not isinstance(base, datetime):
        return []
    utc, tz = base.astimezone(UTC), tz_of(facts)
    out: list[datetime] = []
    for b in bounds(c.value):
        if isinstance(b, OnDate):
            for year in range(max(b.value.year - 1, 1), min(b.value.year + 1, 9999) + 1):
                after = clock.plus_days(clock.occurrence(utc.month, utc.day, year), 1)
                if after is not None:
                    out.append(clock.date_begins(after, tz))
    return out


def anniversary_candidates(c: Comparison, facts: Facts, at: datetime) -> list[datetime]:
    """Instants after ``at``, within the current anniversary's year, at which ``c`` can
    change (see the module's docstring)."""
    assert isinstance(c.left, Anniversary)
    base = field_value(facts, c.left.field.path)
    local = today(facts, at)
    occurs = clock.anniversary(base, local) if isinstance(base, datetime) else None
    if occurs is None:
        return []
    days: list[date | None] = [clock.plus_days(occurs, 1)]
    for b in bounds(c.value):
        if isinstance(b, Today | Relative):
            k = b.amount * (b.unit.days or 0) if isinstance(b, Relative) else 0
            days += [clock.plus_days(occurs, -k), clock.plus_days(occurs, 1 - k)]
        elif not isinstance(b, OnDate):
            raise TypeError(f"not a date value: {b!r}")
    tz = tz_of(facts)
    return [clock.date_begins(d, tz) for d in days if d is not None and d > local]


def _and_next(edge: datetime) -> list[datetime]:
    try:
        return [edge, edge + clock.ONE_MICROSECOND]
    except OverflowError:
        return [edge]
