"""Rules compiled to Python closures: what the membership engine runs.

The engine evaluates the same few dozen rules for every contact an event touches, and again
at each instant ``next_change`` tries. Walking the tree each time (evaluate.py's ``holds``,
the reference) re-decides at every node what kind of node it is; a compiled rule decided that
once. ``AND`` / ``OR`` / ``NOT``, ``in_segment`` and comparisons of a field with constants or
with a relative time get closures of their own; every other condition calls the reference's
leaf evaluation, so both always mean the same (a property test compares them on random rules
and facts).

Compiled rules are kept per rule object (by identity: the engine's parsed rules live as long
as their segment's version), at most ``KEEP`` of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.segmentation.domain.facts import Facts
from services.segmentation.domain.rules import clock
from services.segmentation.domain.rules.ast import (
    And,
    Boolean,
    Comparison,
    Field,
    InSegment,
    Not,
    Number,
    Op,
    Or,
    Relative,
    Rule,
    Text,
    bounds,
)
from services.segmentation.domain.rules.evaluate import excluded, leaf, ordered
from services.segmentation.domain.rules.values import field_value, kind

Check = Callable[[Facts, datetime], bool]
KEEP = 4096
_COMPILED: dict[int, tuple[Rule, Check]] = {}


def evaluate(rule: Rule, facts: Facts, now: datetime) -> bool:
    """Is the contact in the segment ``rule`` defines, at ``now`` (an aware datetime)?"""
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return not excluded(facts) and compiled(rule)(facts, now)


def compiled(rule: Rule) -> Check:
    """``rule`` as a function of (facts, now), for a contact that is neither erased nor
    merged."""
    known = _COMPILED.get(id(rule))
    if known is not None and known[0] is rule:
        return known[1]
    check = _compile(rule)
    if len(_COMPILED) >= KEEP:
        _COMPILED.clear()
    _COMPILED[id(rule)] = (rule, check)
    return check


def _compile(rule: Rule) -> Check:
    if isinstance(rule, And | Or):
        parts = tuple(_compile(p) for p in rule.parts)
        if isinstance(rule, And):
            return lambda f, now: all(p(f, now) for p in parts)
        return lambda f, now: any(p(f, now) for p in parts)
    if isinstance(rule, Not):
        inner = _compile(rule.part)
        return lambda f, now: not inner(f, now)
    if isinstance(rule, InSegment):
        key = rule.key
        return lambda f, now: key in f.segments
    if isinstance(rule, Comparison) and isinstance(rule.left, Field):
        check = _field_comparison(rule, rule.left.path)
        if check is not None:
            return check
    return lambda f, now: leaf(rule, f, now)


def _field_comparison(c: Comparison, path: str) -> Check | None:
    """``field OP constants`` or ``field OP <relative time>``; None for other comparisons."""
    op = c.op
    if op is Op.IS_SET:
        return lambda f, now: field_value(f, path) is not None
    if op is Op.IS_NOT_SET:
        return lambda f, now: field_value(f, path) is None
    values = bounds(c.value)
    if len(values) == 1 and isinstance(values[0], Relative) and op not in (Op.IN, Op.NOT_IN):
        seconds = values[0].seconds

        def against_relative(f: Facts, now: datetime) -> bool:
            a = field_value(f, path)
            return isinstance(a, datetime) and ordered(a, op, clock.shifted(now, seconds))

        return None if op is Op.CONTAINS else against_relative
    if not values or not all(isinstance(v, Text | Number | Boolean) for v in values):
        return None
    expected = tuple(v.value for v in values)  # type: ignore[union-attr]
    if op is Op.CONTAINS:
        item = expected[0]

        def contains(f: Facts, now: datetime) -> bool:
            a = field_value(f, path)
            return isinstance(a, frozenset) and item in a

        return contains
    kinds = {kind(x) for x in expected}
    if len(kinds) != 1:
        return lambda f, now: False  # no value is of every kind
    want = kinds.pop()
    if op is Op.IN or op is Op.NOT_IN:
        inside = op is Op.IN

        def among(f: Facts, now: datetime) -> bool:
            a = field_value(f, path)
            return a is not None and kind(a) == want and any(a == x for x in expected) == inside

        return among
    if op is Op.BETWEEN:
        low, high = expected

        def between(f: Facts, now: datetime) -> bool:
            a = field_value(f, path)
            return a is not None and kind(a) == want and bool(low <= a <= high)  # type: ignore[operator]

        return between
    b = expected[0]

    def against(f: Facts, now: datetime) -> bool:
        a = field_value(f, path)
        return a is not None and kind(a) == want and ordered(a, op, b)

    return against
