"""Evaluating a rule for one contact (the per-event evaluator), and explaining the answer.

- An erased contact, or one merged into another, is in no segment: ``evaluate`` is false.
- Two-valued logic: every condition is true or false. A comparison with an unset operand is
  false (values.py); ``NOT`` turns false into true; ``AND`` / ``OR`` as usual.
- Windows (``within 90d``) hold the instants t with now - 90d < t <= now: an order placed
  exactly 90 days ago has left the window, one placed at this very instant is in it.
- ``BETWEEN a AND b`` includes both ends. Relative times are exact (``-30d`` is now minus
  30 * 86,400 s); ``today`` and ``date '…'`` follow the contact's time zone (clock.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.segmentation.domain.facts import Facts, PurchaseFact
from services.segmentation.domain.rules import clock
from services.segmentation.domain.rules.ast import (
    AbandonedCart,
    And,
    Anniversary,
    Comparison,
    CountTest,
    InSegment,
    Not,
    Now,
    OnDate,
    Op,
    Or,
    PlacedOrder,
    Purchased,
    RandomBucket,
    Relative,
    Rule,
    Scalar,
    Today,
    bounds,
)
from services.segmentation.domain.rules.formatting import format_rule, operand, value
from services.segmentation.domain.rules.values import (
    Actual,
    kind,
    operand_value,
    resolve,
)

FactValue = int | float | str | bool | datetime | date | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """One node of a rule, for one contact at one instant: its text, its value, the facts it
    read (name -> value, in reading order) and the explanations of its parts."""

    text: str
    value: bool
    facts: tuple[tuple[str, FactValue], ...] = ()
    parts: tuple[Explanation, ...] = ()


def excluded(facts: Facts) -> bool:
    """Erased and merged contacts are members of nothing."""
    return facts.erased or bool(facts.merged_into)


def holds(rule: Rule, facts: Facts, now: datetime) -> bool:
    """Does ``rule`` hold for a contact that is neither erased nor merged, at ``now``? The
    reference: compiled.py's ``evaluate`` (what the engine runs) must always agree."""
    if isinstance(rule, And):
        return all(holds(p, facts, now) for p in rule.parts)
    if isinstance(rule, Or):
        return any(holds(p, facts, now) for p in rule.parts)
    if isinstance(rule, Not):
        return not holds(rule.part, facts, now)
    return leaf(rule, facts, now)


def leaf(rule: Rule, facts: Facts, now: datetime) -> bool:
    """A leaf condition's value (``condition`` without the facts it read: the hot path)."""
    if isinstance(rule, Comparison):
        return _compares(rule, facts, now)
    if isinstance(rule, PlacedOrder):
        return count_passes(rule.count, len(placed_orders(rule, facts, now)))
    if isinstance(rule, Purchased):
        return count_passes(rule.count, len(purchase_orders(rule, facts, now)))
    if isinstance(rule, AbandonedCart):
        return bool(abandonments(rule, facts, now))
    if isinstance(rule, InSegment):
        return rule.key in facts.segments
    if isinstance(rule, RandomBucket):
        return rule.low <= facts.bucket < rule.high
    raise TypeError(f"not a condition: {rule!r}")


def _compares(c: Comparison, facts: Facts, now: datetime) -> bool:
    actual = operand_value(c.left, facts, now)
    if c.op is Op.IS_SET or c.op is Op.IS_NOT_SET:
        return (actual is not None) == (c.op is Op.IS_SET)
    if actual is None:
        return False
    as_date = isinstance(c.left, Anniversary)
    return compare(actual, c.op, [resolve(v, facts, now, as_date) for v in bounds(c.value)])


def explain(rule: Rule, facts: Facts, now: datetime) -> Explanation:
    """The whole tree with every node's value and the facts each condition read. For an
    erased or merged contact, a root that says so, false, above the rule's tree."""
    _aware(now)
    tree = _explain(rule, facts, now)
    if not excluded(facts):
        return tree
    why = ("erased", True) if facts.erased else ("merged_into", facts.merged_into)
    return Explanation("the contact is erased or merged", False, (why,), (tree,))


def _explain(rule: Rule, facts: Facts, now: datetime) -> Explanation:
    if isinstance(rule, Not):
        inner = _explain(rule.part, facts, now)
        return Explanation(format_rule(rule), not inner.value, (), (inner,))
    if isinstance(rule, And | Or):
        parts = tuple(_explain(p, facts, now) for p in rule.parts)
        values = [p.value for p in parts]
        result = all(values) if isinstance(rule, And) else any(values)
        return Explanation(format_rule(rule), result, (), parts)
    result, read = condition(rule, facts, now)
    return Explanation(format_rule(rule), result, tuple(read))


def condition(rule: Rule, facts: Facts, now: datetime) -> tuple[bool, list[tuple[str, FactValue]]]:
    """A leaf condition's value and the facts it read."""
    if isinstance(rule, Comparison):
        return _comparison(rule, facts, now)
    if isinstance(rule, PlacedOrder):
        n = len(placed_orders(rule, facts, now))
        return count_passes(rule.count, n), [("orders counted", n), *_since(rule.within, now)]
    if isinstance(rule, Purchased):
        n = len(purchase_orders(rule, facts, now))
        return count_passes(rule.count, n), [("orders counted", n), *_since(rule.within, now)]
    if isinstance(rule, AbandonedCart):
        n = len(abandonments(rule, facts, now))
        return n > 0, [("abandoned carts counted", n), *_since(rule.within, now)]
    if isinstance(rule, InSegment):
        inside = rule.key in facts.segments
        return inside, [(format_rule(rule), inside)]
    if isinstance(rule, RandomBucket):
        return rule.low <= facts.bucket < rule.high, [("bucket", facts.bucket)]
    raise TypeError(f"not a condition: {rule!r}")


Read = list[tuple[str, FactValue]]


def _comparison(c: Comparison, facts: Facts, now: datetime) -> tuple[bool, Read]:
    actual = operand_value(c.left, facts, now)
    read: Read = []
    if isinstance(c.left, Anniversary):
        base = operand_value(c.left.field, facts, now)
        read.append((c.left.field.path, _shown(base)))
    read.append((operand(c.left), _shown(actual)))
    if c.op is Op.IS_SET or c.op is Op.IS_NOT_SET:
        return (actual is not None) == (c.op is Op.IS_SET), read
    if actual is None:
        return False, read
    as_date = isinstance(c.left, Anniversary)
    expected: list[Actual | None] = []
    for v in bounds(c.value):
        r = resolve(v, facts, now, as_date)
        expected.append(r)
        if _moving(v):
            read.append((value(v), _shown(r)))
    return compare(actual, c.op, expected), read


def compare(actual: Actual, op: Op, expected: list[Actual | None]) -> bool:
    """``actual op expected`` (one value, the two bounds of BETWEEN or the items of IN); false
    when a value is of another kind than ``actual``."""
    if op is Op.CONTAINS:
        return isinstance(actual, frozenset) and expected[0] in actual
    want = kind(actual)
    for x in expected:
        if x is None or kind(x) != want:
            return False
    a: Any = actual
    if op is Op.IN or op is Op.NOT_IN:
        return any(a == x for x in expected) == (op is Op.IN)
    if op is Op.BETWEEN:
        return bool(expected[0] <= a <= expected[1])
    return ordered(a, op, expected[0])


def ordered(a: Any, op: Op, b: Any) -> bool:
    """``a op b`` for =, !=, <, <=, >, >= on two values of one kind."""
    if op is Op.GE:
        return bool(a >= b)
    if op is Op.EQ:
        return bool(a == b)
    if op is Op.GT:
        return bool(a > b)
    if op is Op.LE:
        return bool(a <= b)
    if op is Op.LT:
        return bool(a < b)
    if op is Op.NE:
        return bool(a != b)
    raise ValueError(f"not a comparison operator: {op!r}")


def count_passes(t: CountTest, n: int) -> bool:
    return ordered(n, t.op, t.value)


def window_start(now: datetime, within: Relative | None) -> datetime | None:
    """Where a window ending at ``now`` starts (excluded); None without a window (every
    instant counts)."""
    return None if within is None else clock.shifted(now, -within.seconds)


def placed_orders(rule: PlacedOrder, facts: Facts, now: datetime) -> list[datetime]:
    """Place times of the orders ``placed_order(...)`` counts at ``now``."""
    start, total, currency = window_start(now, rule.within), rule.total, rule.currency
    return [
        o.place_time
        for o in facts.orders
        if not o.cancelled
        and (start is None or start < o.place_time <= now)
        and (not currency or o.currency == currency)
        and (total is None or count_passes(total, o.total))
    ]


def purchase_orders(rule: Purchased, facts: Facts, now: datetime) -> dict[str, datetime]:
    """The orders (id -> time) ``purchased(...)`` counts at ``now``: orders, not cancelled,
    that contained one of the SKUs, within the window."""
    start, rows = window_start(now, rule.within), purchase_rows(rule, facts)
    if not rows:
        return {}
    cancelled = {o.order_id for o in facts.orders if o.cancelled}
    return {
        p.order_id: p.time
        for p in rows
        if (start is None or start < p.time <= now) and p.order_id not in cancelled
    }


def purchase_rows(rule: Purchased, facts: Facts) -> list[PurchaseFact]:
    key = ("purchases", rule.skus)
    rows: list[PurchaseFact] | None = facts.memo.get(key)
    if rows is None:
        skus = rule.skus
        rows = facts.memo[key] = [p for p in facts.purchases if p.sku in skus]
    return rows


def abandonments(rule: AbandonedCart, facts: Facts, now: datetime) -> list[datetime]:
    start = window_start(now, rule.within)
    return [
        c.abandoned_time
        for c in facts.carts
        if c.abandoned_time is not None and (start is None or start < c.abandoned_time <= now)
    ]


def _since(within: Relative | None, now: datetime) -> list[tuple[str, FactValue]]:
    """Where a window starts (excluded), for explanations."""
    return [] if within is None else [("window after", clock.shifted(now, -within.seconds))]


def _moving(v: Scalar) -> bool:
    """Does the value depend on the clock (worth showing what it stood for)?"""
    return isinstance(v, Relative | Today | Now | OnDate)


def _shown(x: Actual | None) -> FactValue:
    return tuple(sorted(x)) if isinstance(x, frozenset) else x


def _aware(now: datetime) -> None:
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
