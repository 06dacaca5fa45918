"""Which rules make sense: types, operators, limits. The same checks whatever the rule came
as (text or protobuf); each problem names the node it is about, and the caller says where that
node was (a line and column, or a path in the tree).

Operators by type (see fields.py for the types):

- number: ``= != < <= > >=``, ``BETWEEN``, ``IN``, ``NOT IN`` with numbers;
- text: ``= !=``, ``IN``, ``NOT IN`` with texts (exact, case-sensitive; no ordering);
- bool: ``= !=`` with true or false; a bare bool field means ``= true``;
- time: ``= != < <= > >=`` and ``BETWEEN`` with ``-30d`` / ``+7d`` (now minus or plus),
  ``now``, ``today`` (the start of the contact's day), ``date '2026-11-27'`` (the start of that
  day for the contact) or ``date '2026-11-27T09:00:00Z'``;
- date (``anniversary(...)``): the same operators with ``today``, ``+7d`` (today plus whole
  days: d, w or y) and ``date '2026-11-27'``;
- tags: ``CONTAINS 'x'``;
- every type: ``IS SET``, ``IS NOT SET``.

Limits: nesting 32 deep, 1,000 conditions, 1,000 items in a list, texts of 1,000 characters
without NUL, relative times and windows of at most 200 years.
"""

from __future__ import annotations

import math
import re

from services.segmentation.domain.rules import errors as e
from services.segmentation.domain.rules.ast import (
    ORDERING,
    PRESENCE,
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
    Node,
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
    Scalar,
    Text,
    Today,
    bounds,
    children,
)
from services.segmentation.domain.rules.fields import Type, described, lookup

Problem = tuple[Node, str, str]  # (node, reason, message)

MAX_DEPTH = 32
MAX_CONDITIONS = 1_000
MAX_ITEMS = 1_000
MAX_TEXT = 1_000
MAX_SECONDS = 200 * 365 * 86_400
MAX_COUNT = 2**53
_CURRENCY = re.compile(r"[A-Z]{3}")
_NUMERIC = ORDERING | {Op.BETWEEN, Op.IN, Op.NOT_IN}
_TIMELY = ORDERING | {Op.BETWEEN}
_OPS: dict[str, frozenset[Op]] = {
    "number": _NUMERIC,
    "text": frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN}),
    "bool": frozenset({Op.EQ, Op.NE}),
    "time": _TIMELY,
    "date": _TIMELY,
}


def problems(rule: Rule) -> list[Problem]:
    """Everything wrong with ``rule`` (empty when it can be used)."""
    out: list[Problem] = []
    stack: list[tuple[Rule, int]] = [(rule, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH or seen > MAX_CONDITIONS:
            what = f"nested more than {MAX_DEPTH} deep" if depth > MAX_DEPTH else "too long"
            limit = f"at most {MAX_CONDITIONS} conditions"
            out.append((node, e.RULE_TOO_LARGE, f"the rule is {what} ({limit}, {MAX_DEPTH} deep)"))
            return out
        if isinstance(node, And | Or) and len(node.parts) < 2:
            out.append((node, e.RULE_TOO_LARGE, "AND and OR join two or more conditions"))
        elif isinstance(node, Comparison):
            out.extend(_comparison(node))
        elif not isinstance(node, And | Or | Not):
            out.extend(_behaviour(node))
        stack.extend((c, depth + 1) for c in reversed(children(node)))
    return out


def value_kind(v: Scalar) -> str:
    """``text``, ``number``, ``bool`` or ``time`` (every time-like value)."""
    if isinstance(v, Text):
        return "text"
    if isinstance(v, Number):
        return "number"
    if isinstance(v, Boolean):
        return "bool"
    return "time"


def operand_type(left: Field | Anniversary) -> Type | str:
    """The operand's type, or why it has none."""
    info = lookup(left.field.path if isinstance(left, Anniversary) else left.path)
    if isinstance(info, str):
        return info
    if isinstance(left, Anniversary):
        if info.type not in (Type.TIME, Type.ANY):
            return f"anniversary() takes a time field; {left.field.path} is {described(info.type)}"
        return Type.DATE
    return info.type


def _comparison(c: Comparison) -> list[Problem]:
    t = operand_type(c.left)
    if isinstance(t, str):
        reason = e.TYPE_MISMATCH if t.startswith("anniversary") else e.UNKNOWN_FIELD
        return [(c.left, reason, t)]
    name = _name(c.left)
    if c.op in PRESENCE:
        return [] if c.value is None else [(c, e.TYPE_MISMATCH, f"{c.op.value} takes no value")]
    shape = _shape(c)
    if shape:
        return [(c, e.TYPE_MISMATCH, shape)]
    scalars = bounds(c.value)
    out = [p for v in scalars for p in _scalar(v)]
    if t is Type.TAGS or c.op is Op.CONTAINS:
        if t is not Type.TAGS:
            return [*out, (c, e.TYPE_MISMATCH, f"CONTAINS is for tags; {name} is {described(t)}")]
        if c.op is not Op.CONTAINS or not isinstance(c.value, Text):
            return [*out, (c, e.TYPE_MISMATCH, "tags is a set: write tags CONTAINS 'vip'")]
        return out
    kinds = {value_kind(v) for v in scalars}
    if len(kinds) > 1:
        return [*out, (c, e.TYPE_MISMATCH, f"mixed values ({', '.join(sorted(kinds))})")]
    kind = kinds.pop()
    expected = {Type.ANY: kind, Type.DATE: "time"}.get(t, t.value)
    if kind != expected:
        hint = " (write date '2026-11-27' for a date)" if t is Type.TIME else ""
        why = f"{name} is {described(t)}, not {described(kind)}{hint}"
        return [*out, (c, e.TYPE_MISMATCH, why)]
    if c.op not in _OPS[kind]:
        ops = " ".join(o.value for o in sorted(_OPS[kind], key=lambda o: list(Op).index(o)))
        return [*out, (c, e.TYPE_MISMATCH, f"{kind} values take {ops}, not {c.op.value}")]
    if t is Type.DATE:
        out.extend(p for v in scalars if (p := _date_value(v)) is not None)
    return out


def _shape(c: Comparison) -> str:
    """Why the value does not fit the operator ('' when it does)."""
    if c.value is None:
        return f"{c.op.value} needs a value"
    if (c.op is Op.BETWEEN) != isinstance(c.value, Range):
        return "BETWEEN takes two values: x BETWEEN low AND high"
    if (c.op in (Op.IN, Op.NOT_IN)) != isinstance(c.value, Items):
        return "IN takes a list: x IN ('a', 'b')"
    if isinstance(c.value, Items) and not 0 < len(c.value.values) <= MAX_ITEMS:
        return f"a list has 1..{MAX_ITEMS} items"
    if isinstance(c.value, Items) and any(not isinstance(v, Text | Number) for v in c.value.values):
        return "a list holds texts or numbers"
    return ""


def _date_value(v: Scalar) -> Problem | None:
    if isinstance(v, Now | AtTime):
        why = "an anniversary is a date: compare it with today, +7d or a date"
        return (v, e.TYPE_MISMATCH, why)
    if isinstance(v, Relative) and v.unit.days is None:
        return (v, e.BAD_DURATION, "an anniversary is a date: use days, weeks or years (+7d)")
    return None


def _scalar(v: Scalar) -> list[Problem]:
    if isinstance(v, Number) and not math.isfinite(v.value):
        return [(v, e.BAD_NUMBER, "numbers must be finite")]
    if isinstance(v, Text):
        return [(v, e.BAD_TEXT, why)] if (why := _text_problem(v.value)) else []
    if isinstance(v, Relative) and abs(v.seconds) > MAX_SECONDS:
        return [(v, e.BAD_DURATION, "relative times reach at most 200 years")]
    if isinstance(v, AtTime) and v.value.utcoffset() is None:
        return [(v, e.BAD_DATE, "a time needs its offset (Z or +01:00)")]
    if isinstance(v, OnDate | Today | Now | Boolean | AtTime | Relative | Number):
        return []
    return [(v, e.TYPE_MISMATCH, "not a single value")]


def _text_problem(s: str) -> str:
    if "\x00" in s:
        return "texts cannot hold NUL characters"
    if not s.isascii() and any(0xD800 <= ord(ch) <= 0xDFFF for ch in s):
        return "texts must be valid Unicode (no lone surrogates)"
    if len(s) > MAX_TEXT:
        return f"texts are at most {MAX_TEXT} characters"
    return ""


def _behaviour(node: Rule) -> list[Problem]:
    out: list[Problem] = []
    if isinstance(node, PlacedOrder | Purchased):
        out.extend(_count(node.count, "count"))
    if isinstance(node, PlacedOrder | Purchased | AbandonedCart) and node.within is not None:
        window = node.within
        if window.amount <= 0 or window.seconds > MAX_SECONDS:
            why = "a window is 1s..200y, written without a sign: 90d"
            out.append((window, e.BAD_DURATION, why))
    if isinstance(node, PlacedOrder):
        if node.total is not None:
            out.extend(_count(node.total, "total"))
        if node.currency and not _CURRENCY.fullmatch(node.currency):
            out.append((node, e.BAD_ARGUMENT, "currency is three letters: currency = 'EUR'"))
    elif isinstance(node, Purchased):
        if not 0 < len(node.skus) <= MAX_ITEMS:
            out.append((node, e.MISSING_ARGUMENT, "purchased() needs sku = '...' or sku IN (...)"))
        bad = next((w for s in node.skus if (w := _text_problem(s) or ("" if s else "empty"))), "")
        if bad:
            out.append((node, e.BAD_TEXT, f"sku: {bad}"))
    elif isinstance(node, InSegment):
        bad = _text_problem(node.key) or ("" if node.key else "name a segment: in_segment('vip')")
        if bad or len(node.key) > 128:
            out.append((node, e.BAD_ARGUMENT, bad or "segment keys are at most 128 characters"))
    elif isinstance(node, RandomBucket) and not 0 <= node.low <= node.high <= 100:
        out.append((node, e.BAD_ARGUMENT, "random_bucket(low, high) needs 0 <= low <= high <= 100"))
    return out


def _count(t: CountTest, what: str) -> list[Problem]:
    if t.op not in ORDERING:
        return [(t, e.TYPE_MISMATCH, f"{what} takes = != < <= > >=")]
    if not 0 <= t.value <= MAX_COUNT:
        return [(t, e.BAD_NUMBER, f"{what} is a whole number from 0")]
    return []


def _name(left: Field | Anniversary) -> str:
    return f"anniversary({left.field.path})" if isinstance(left, Anniversary) else left.path
