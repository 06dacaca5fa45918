"""The functions of the text syntax, from their parsed arguments: placed_order, purchased,
abandoned_cart (named arguments, any order), in_segment, random_bucket (positional) and
anniversary (one field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.segmentation.domain.rules import errors as e
from services.segmentation.domain.rules.ast import (
    AbandonedCart,
    Anniversary,
    CountTest,
    InSegment,
    Items,
    Number,
    Op,
    PlacedOrder,
    Pos,
    Purchased,
    RandomBucket,
    Relative,
    Text,
)

FUNCTIONS = ("placed_order", "purchased", "abandoned_cart", "in_segment", "random_bucket")
_ARGS = {  # function -> {argument: shapes allowed}
    "placed_order": {
        "count": "compare",
        "total": "compare",
        "currency": "compare",
        "within": "value",
    },
    "purchased": {"sku": "compare in", "count": "compare", "within": "value"},
    "abandoned_cart": {"within": "value"},
}


class Failure(Exception):
    def __init__(self, reason: str, message: str, pos: Pos) -> None:
        super().__init__(message)
        self.reason, self.message, self.pos = reason, message, pos


@dataclass(frozen=True, slots=True)
class Arg:
    shape: str  # compare, in, value, positional, path
    name: str
    op: Op | None
    value: Any  # a Scalar, Items or Field
    pos: Pos


def build_call(name: str, args: list[Arg], pos: Pos) -> Any:
    """The node ``name(args)`` stands for; Failure when it is no function or args don't fit."""
    if name == "anniversary":
        if len(args) != 1 or args[0].shape != "path":
            raise Failure(e.WRONG_ARITY, "anniversary() takes one time field", pos)
        return Anniversary(args[0].value, pos=pos)
    if name == "in_segment":
        (key,) = _positional(name, args, 1, pos, Text)
        return InSegment(key.value, pos=pos)
    if name == "random_bucket":
        low, high = _positional(name, args, 2, pos, Number)
        return RandomBucket(_whole(low), _whole(high), pos=pos)
    if name not in _ARGS:
        known = ", ".join(f"{f}()" for f in (*FUNCTIONS, "anniversary"))
        why = f"unknown function {name}(); functions are {known}"
        raise Failure(e.UNKNOWN_FUNCTION, why, pos)
    named = _named(name, args)
    if name == "placed_order":
        currency = named.get("currency")
        if currency and (currency.op is not Op.EQ or not isinstance(currency.value, Text)):
            raise Failure(e.BAD_ARGUMENT, "write currency = 'EUR'", currency.pos)
        return PlacedOrder(
            _count(named.get("count")),
            _window(named.get("within")),
            _count(named["total"]) if "total" in named else None,
            currency.value.value.upper() if currency else "",
            pos=pos,
        )
    if name == "purchased":
        if "sku" not in named:
            why = "purchased() needs sku = '...' or sku IN (...)"
            raise Failure(e.MISSING_ARGUMENT, why, pos)
        skus, count = _skus(named["sku"]), _count(named.get("count"))
        return Purchased(skus, count, _window(named.get("within")), pos=pos)
    return AbandonedCart(_window(named.get("within")), pos=pos)


def _positional(name: str, args: list[Arg], n: int, pos: Pos, kind: type) -> list[Any]:
    fits = all(a.shape == "positional" and isinstance(a.value, kind) for a in args)
    if len(args) != n or not fits:
        what = "a text ('vip')" if kind is Text else "two whole numbers (0, 10)"
        raise Failure(e.WRONG_ARITY, f"{name}() takes {what}", pos)
    return [a.value for a in args]


def _named(name: str, args: list[Arg]) -> dict[str, Arg]:
    out: dict[str, Arg] = {}
    allowed = _ARGS[name]
    for a in args:
        if a.name not in allowed or a.shape not in allowed[a.name].split():
            options = ", ".join(allowed)
            raise Failure(e.UNKNOWN_ARGUMENT, f"{name}() takes {options}", a.pos)
        if a.name in out:
            raise Failure(e.DUPLICATE_ARGUMENT, f"{a.name} is given twice", a.pos)
        out[a.name] = a
    return out


def _whole(n: Number) -> int:
    if not float(n.value).is_integer() or abs(n.value) > 2**53:
        raise Failure(e.BAD_NUMBER, "a whole number is needed here", n.pos or Pos(1, 1))
    return int(n.value)


def _count(arg: Arg | None) -> CountTest:
    if arg is None:
        return CountTest(Op.GE, 1)
    if not isinstance(arg.value, Number):
        raise Failure(e.TYPE_MISMATCH, f"{arg.name} takes a number", arg.pos)
    assert arg.op is not None
    return CountTest(arg.op, _whole(arg.value), pos=arg.pos)


def _window(arg: Arg | None) -> Relative | None:
    if arg is None:
        return None
    if not isinstance(arg.value, Relative):
        raise Failure(e.BAD_DURATION, "write within 90d", arg.pos)
    return arg.value


def _skus(arg: Arg) -> tuple[str, ...]:
    values = arg.value.values if isinstance(arg.value, Items) else (arg.value,)
    texts = [v.value for v in values if isinstance(v, Text)]
    if (arg.shape == "compare" and arg.op is not Op.EQ) or len(texts) != len(values):
        raise Failure(e.BAD_ARGUMENT, "write sku = 'TEA-1' or sku IN ('A', 'B')", arg.pos)
    return tuple(texts)
