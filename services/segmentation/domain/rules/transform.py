"""From lark's parse tree to the rule tree (ast.py), with the problems only the text can have:
unknown functions, their arguments, a relative time without its sign, a bad date literal."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from lark import Token, Transformer, v_args
from lark.tree import Meta

from services.segmentation.domain.rules import errors as e
from services.segmentation.domain.rules.ast import (
    AbandonedCart,
    And,
    Anniversary,
    AtTime,
    Boolean,
    Comparison,
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
    Pos,
    Purchased,
    RandomBucket,
    Range,
    Relative,
    Rule,
    Scalar,
    Text,
    Today,
    Unit,
)
from services.segmentation.domain.rules.calls import Arg, Failure, build_call
from services.segmentation.domain.rules.fields import Type, described, lookup, normalize

_OPS = {"<>": Op.NE, **{o.value: o for o in Op}}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})", re.I)


def _pos(meta: Meta | Token) -> Pos:
    if isinstance(meta, Token):
        return Pos(meta.line or 1, meta.column or 1)
    return Pos(meta.line, meta.column) if not meta.empty else Pos(1, 1)


@v_args(meta=True)
class Build(Transformer[Token, Rule]):
    """lark tree -> Rule. A method raises Failure for what the checker cannot see. One
    instance per parse: it remembers which relative times were written without a sign."""

    def __init__(self) -> None:
        super().__init__()
        self._unsigned: list[Relative] = []

    def _signed(self, value: Any) -> None:
        if isinstance(value, Relative) and any(value is u for u in self._unsigned):
            amount = f"{abs(value.amount)}{value.unit.value}"
            why = f"give a relative time its sign: -{amount} ({amount} ago) or +{amount} (from now)"
            raise Failure(e.BAD_DURATION, why, value.pos or Pos(1, 1))

    def or_(self, meta: Meta, parts: list[Rule]) -> Rule:
        return Or(tuple(parts), pos=_pos(meta))

    def and_(self, meta: Meta, parts: list[Rule]) -> Rule:
        return And(tuple(parts), pos=_pos(meta))

    def negation(self, meta: Meta, c: list[Rule]) -> Rule:
        return Not(c[0], pos=_pos(meta))

    def compare(self, meta: Meta, c: list[Any]) -> Rule:
        left, op, value = _operand(c[0]), _OPS[str(c[1])], c[2]
        self._signed(value)
        return Comparison(left, op, value, pos=_pos(c[1]))

    def between(self, meta: Meta, c: list[Any]) -> Rule:
        self._signed(c[1])
        self._signed(c[2])
        between = Range(c[1], c[2], pos=c[1].pos)
        return Comparison(_operand(c[0]), Op.BETWEEN, between, pos=_pos(meta))

    def in_list(self, meta: Meta, c: list[Any]) -> Rule:
        return Comparison(_operand(c[0]), Op.IN, c[1], pos=_pos(meta))

    def not_in_list(self, meta: Meta, c: list[Any]) -> Rule:
        return Comparison(_operand(c[0]), Op.NOT_IN, c[1], pos=_pos(meta))

    def contains(self, meta: Meta, c: list[Any]) -> Rule:
        return Comparison(_operand(c[0]), Op.CONTAINS, c[1], pos=_pos(meta))

    def is_set(self, meta: Meta, c: list[Any]) -> Rule:
        return Comparison(_operand(c[0]), Op.IS_SET, pos=_pos(meta))

    def is_not_set(self, meta: Meta, c: list[Any]) -> Rule:
        return Comparison(_operand(c[0]), Op.IS_NOT_SET, pos=_pos(meta))

    def bare(self, meta: Meta, c: list[Any]) -> Rule:
        node = c[0]
        if isinstance(node, Field):
            info = lookup(node.path)
            if not isinstance(info, str) and info.type not in (Type.BOOL, Type.ANY):
                why = f"{node.path} is {described(info.type)}: compare it ({node.path} = ...)"
                raise Failure(e.TYPE_MISMATCH, why, node.pos or _pos(meta))
            return Comparison(node, Op.EQ, Boolean(True), pos=_pos(meta))
        if isinstance(node, Anniversary):
            raise Failure(e.TYPE_MISMATCH, "anniversary() is a date: compare it", _pos(meta))
        rule: Rule = node
        return rule

    def path(self, meta: Meta, names: list[Token]) -> Field:
        return Field(normalize(".".join(str(n) for n in names)), pos=_pos(meta))

    def items(self, meta: Meta, values: list[Scalar]) -> Items:
        for v in values:
            if not isinstance(v, Text | Number):
                raise Failure(e.TYPE_MISMATCH, "a list holds texts or numbers", v.pos or _pos(meta))
        return Items(tuple(values), pos=_pos(meta))  # type: ignore[arg-type]

    # --- values ---------------------------------------------------------------------------

    def text(self, meta: Meta, c: list[Token]) -> Text:
        return Text(str(c[0])[1:-1].replace("''", "'"), pos=_pos(c[0]))

    def number(self, meta: Meta, c: list[Token]) -> Number:
        return Number(float(str(c[0])), pos=_pos(c[0]))

    def relative(self, meta: Meta, c: list[Token]) -> Relative:
        raw = str(c[0])
        node = Relative(int(raw[:-1]), Unit(raw[-1]), pos=_pos(c[0]))
        if raw[0] not in "+-":
            self._unsigned.append(node)
        return node

    def true(self, meta: Meta, c: list[Any]) -> Boolean:
        return Boolean(True, pos=_pos(meta))

    def false(self, meta: Meta, c: list[Any]) -> Boolean:
        return Boolean(False, pos=_pos(meta))

    def today(self, meta: Meta, c: list[Any]) -> Today:
        return Today(pos=_pos(meta))

    def now(self, meta: Meta, c: list[Any]) -> Now:
        return Now(pos=_pos(meta))

    def absolute(self, meta: Meta, c: list[Token]) -> OnDate | AtTime:
        raw, pos = str(c[0])[1:-1].replace("''", "'"), _pos(c[0])
        try:
            if _DATE.fullmatch(raw):
                return OnDate(date.fromisoformat(raw), pos=pos)
            if _TIME.fullmatch(raw):
                at = datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
                return AtTime(at.astimezone(UTC), pos=pos)
        except ValueError:
            raise Failure(e.BAD_DATE, f"{raw!r} is not a real date or time", pos) from None
        why = "write date 'YYYY-MM-DD' or date 'YYYY-MM-DDThh:mm:ssZ' (with Z or an offset)"
        raise Failure(e.BAD_DATE, why, pos)

    # --- functions ------------------------------------------------------------------------

    def named_compare(self, meta: Meta, c: list[Any]) -> Arg:
        return Arg("compare", str(c[0]).lower(), _OPS[str(c[1])], c[2], _pos(c[0]))

    def named_in(self, meta: Meta, c: list[Any]) -> Arg:
        return Arg("in", str(c[0]).lower(), Op.IN, c[1], _pos(c[0]))

    def named_value(self, meta: Meta, c: list[Any]) -> Arg:
        return Arg("value", str(c[0]).lower(), None, c[1], _pos(c[0]))

    def positional(self, meta: Meta, c: list[Any]) -> Arg:
        return Arg("positional", "", None, c[0], _pos(meta))

    def positional_path(self, meta: Meta, c: list[Any]) -> Arg:
        return Arg("path", "", None, c[0], _pos(meta))

    def call(self, meta: Meta, c: list[Any]) -> Any:
        args: list[Arg] = [a for a in c[1:] if a is not None]
        return build_call(str(c[0]).lower(), args, _pos(c[0]))


_CONDITIONS = {
    PlacedOrder: "placed_order",
    Purchased: "purchased",
    AbandonedCart: "abandoned_cart",
    InSegment: "in_segment",
    RandomBucket: "random_bucket",
}


def _operand(node: Any) -> Field | Anniversary:
    if isinstance(node, Field | Anniversary):
        return node
    name = _CONDITIONS.get(type(node), "it")
    why = f"{name}() is a condition, true or false: use it alone, not in a comparison"
    raise Failure(e.TYPE_MISMATCH, why, node.pos or Pos(1, 1))
