"""``format``: a rule's canonical text, such that ``parse(format(r)) == r``.

Keywords in upper case (``AND``, ``BETWEEN``, ``IS NOT SET``), literals in lower case
(``true``, ``today``, ``date '…'``), one space around operators, parentheses only where the
tree needs them (an OR inside an AND, a group under NOT, an AND or OR written inside another
of the same kind). Numbers are written shortest (``3``, ``0.1``, ``1e+20``); relative times
with their sign (``-30d``, ``+0d``), windows without (``within 90d``); times in UTC with ``Z``.
A function's arguments come in a fixed order and defaults are left out (``count >= 1``).
"""

from __future__ import annotations

from services.segmentation.domain.rules.ast import (
    AbandonedCart,
    And,
    Anniversary,
    AtTime,
    Boolean,
    Comparison,
    CountTest,
    Field,
    InSegment,
    Items,
    Not,
    Now,
    Number,
    OnDate,
    Op,
    Or,
    PlacedOrder,
    Purchased,
    RandomBucket,
    Range,
    Relative,
    Rule,
    Text,
    Today,
    Value,
)


def format_rule(rule: Rule) -> str:
    """The canonical text of ``rule``."""
    if isinstance(rule, And | Or):
        joiner = " AND " if isinstance(rule, And) else " OR "
        return joiner.join(_grouped(p, inside=rule) for p in rule.parts)
    if isinstance(rule, Not):
        return "NOT " + _grouped(rule.part, inside=rule)
    if isinstance(rule, Comparison):
        return comparison(rule)
    return behaviour(rule)


def _grouped(part: Rule, inside: Rule) -> str:
    text = format_rule(part)
    needs = isinstance(part, Or) or (isinstance(part, And) and not isinstance(inside, Or))
    return f"({text})" if needs else text


def operand(left: Field | Anniversary) -> str:
    return f"anniversary({left.field.path})" if isinstance(left, Anniversary) else left.path


def comparison(c: Comparison) -> str:
    left = operand(c.left)
    if c.op is Op.EQ and isinstance(c.left, Field) and c.value == Boolean(True):
        return left  # a bare bool field
    if c.value is None:
        return f"{left} {c.op.value}"
    return f"{left} {c.op.value} {value(c.value)}"


def value(v: Value) -> str:
    if isinstance(v, Text):
        return text(v.value)
    if isinstance(v, Number):
        return number(v.value)
    if isinstance(v, Boolean):
        return "true" if v.value else "false"
    if isinstance(v, Items):
        return "(" + ", ".join(value(i) for i in v.values) + ")"
    if isinstance(v, Relative):
        return ("-" if v.amount < 0 else "+") + window(v)
    if isinstance(v, Today):
        return "today"
    if isinstance(v, Now):
        return "now"
    if isinstance(v, OnDate):
        return f"date '{v.value.isoformat()}'"
    if isinstance(v, AtTime):
        return "date '" + v.value.isoformat().replace("+00:00", "Z") + "'"
    if isinstance(v, Range):
        return f"{value(v.low)} AND {value(v.high)}"
    raise TypeError(f"not a value: {v!r}")


def text(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def number(n: float) -> str:
    n = float(n)
    if n.is_integer() and abs(n) < 1e16:
        return str(int(n))
    return repr(n)


def window(r: Relative) -> str:
    return f"{abs(r.amount)}{r.unit.value}"


def behaviour(rule: Rule) -> str:
    if isinstance(rule, InSegment):
        return f"in_segment({text(rule.key)})"
    if isinstance(rule, RandomBucket):
        return f"random_bucket({rule.low}, {rule.high})"
    args: list[str] = []
    if isinstance(rule, Purchased):
        skus = rule.skus
        args.append(f"sku = {text(skus[0])}" if len(skus) == 1 else f"sku IN {_texts(skus)}")
    if isinstance(rule, PlacedOrder | Purchased) and rule.count != CountTest(Op.GE, 1):
        args.append(count("count", rule.count))
    if isinstance(rule, PlacedOrder):
        if rule.total is not None:
            args.append(count("total", rule.total))
        if rule.currency:
            args.append(f"currency = {text(rule.currency)}")
    if not isinstance(rule, PlacedOrder | Purchased | AbandonedCart):
        raise TypeError(f"not a rule: {rule!r}")
    if rule.within is not None:
        args.append(f"within {window(rule.within)}")
    name = {PlacedOrder: "placed_order", Purchased: "purchased"}.get(type(rule), "abandoned_cart")
    return f"{name}({', '.join(args)})"


def count(name: str, t: CountTest) -> str:
    return f"{name} {t.op.value} {t.value}"


def _texts(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(text(v) for v in values) + ")"
