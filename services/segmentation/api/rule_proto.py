"""Rules as protobuf (``crm.segmentation.v1.Rule``) and back; a RuleError as the
INVALID_ARGUMENT the API answers.

``from_proto`` checks the tree as ``parse`` checks text; its violations name the path inside
the request (``rule.all.rules[1].comparison.value.number_value``) instead of a line and a
column. ``from_proto(to_proto(r)) == r`` for every rule. Times keep microseconds (PostgreSQL's
precision): finer nanos are dropped. Field paths and currencies are normalised as in text.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from crm.segmentation.v1 import rules_pb2 as pb
from services.segmentation.domain import rules as r
from services.segmentation.domain.rules import errors as e
from services.segmentation.domain.rules.check import MAX_DEPTH
from services.segmentation.domain.rules.fields import normalize
from shared.grpckit import errors as ge

_OPS = {
    r.Op.EQ: pb.OPERATOR_EQUAL,
    r.Op.NE: pb.OPERATOR_NOT_EQUAL,
    r.Op.LT: pb.OPERATOR_LESS,
    r.Op.LE: pb.OPERATOR_LESS_OR_EQUAL,
    r.Op.GT: pb.OPERATOR_GREATER,
    r.Op.GE: pb.OPERATOR_GREATER_OR_EQUAL,
    r.Op.BETWEEN: pb.OPERATOR_BETWEEN,
    r.Op.IN: pb.OPERATOR_IN,
    r.Op.NOT_IN: pb.OPERATOR_NOT_IN,
    r.Op.CONTAINS: pb.OPERATOR_CONTAINS,
    r.Op.IS_SET: pb.OPERATOR_IS_SET,
    r.Op.IS_NOT_SET: pb.OPERATOR_IS_NOT_SET,
}
_UNITS = {
    r.Unit.SECONDS: pb.TIME_UNIT_SECONDS,
    r.Unit.MINUTES: pb.TIME_UNIT_MINUTES,
    r.Unit.HOURS: pb.TIME_UNIT_HOURS,
    r.Unit.DAYS: pb.TIME_UNIT_DAYS,
    r.Unit.WEEKS: pb.TIME_UNIT_WEEKS,
    r.Unit.YEARS: pb.TIME_UNIT_YEARS,
}
_OPS_BACK = {v: k for k, v in _OPS.items()}
_UNITS_BACK = {v: k for k, v in _UNITS.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def invalid_argument(err: e.RuleError, field: str) -> ge.InvalidArgument:
    """The status for a rule given in request field ``field`` (text or tree): one BadRequest
    violation per problem, "line L, column C: …" for text."""
    violations = [(v.field_path or field, v.description) for v in err.violations]
    return ge.InvalidArgument(err.reason, f"{field}: {err}", violations=violations)


# --- to protobuf -------------------------------------------------------------------------------


def to_proto(rule: r.Rule) -> pb.Rule:
    if isinstance(rule, r.And | r.Or):
        group = pb.RuleGroup(rules=[to_proto(p) for p in rule.parts])
        return pb.Rule(all=group) if isinstance(rule, r.And) else pb.Rule(any=group)
    if isinstance(rule, r.Not):
        return pb.Rule(negation=to_proto(rule.part))
    if isinstance(rule, r.Comparison):
        c = pb.Comparison(operator=_OPS[rule.op])
        if isinstance(rule.left, r.Anniversary):
            c.anniversary = rule.left.field.path
        else:
            c.field = rule.left.path
        if rule.value is not None:
            c.value.CopyFrom(value_to_proto(rule.value))
        return pb.Rule(comparison=c)
    if isinstance(rule, r.PlacedOrder):
        placed = pb.PlacedOrder(count=_count(rule.count), currency=rule.currency)
        if rule.total is not None:
            placed.total.CopyFrom(_count(rule.total))
        if rule.within is not None:
            placed.within.CopyFrom(_relative(rule.within))
        return pb.Rule(placed_order=placed)
    if isinstance(rule, r.Purchased):
        bought = pb.Purchased(skus=list(rule.skus), count=_count(rule.count))
        if rule.within is not None:
            bought.within.CopyFrom(_relative(rule.within))
        return pb.Rule(purchased=bought)
    if isinstance(rule, r.AbandonedCart):
        cart = pb.AbandonedCart()
        if rule.within is not None:
            cart.within.CopyFrom(_relative(rule.within))
        return pb.Rule(abandoned_cart=cart)
    if isinstance(rule, r.InSegment):
        return pb.Rule(in_segment=pb.InSegment(segment_key=rule.key))
    return pb.Rule(random_bucket=pb.RandomBucket(low=rule.low, high=rule.high))


def value_to_proto(v: r.Value) -> pb.Value:
    if isinstance(v, r.Text):
        return pb.Value(string_value=v.value)
    if isinstance(v, r.Number):
        return pb.Value(number_value=v.value)
    if isinstance(v, r.Boolean):
        return pb.Value(bool_value=v.value)
    if isinstance(v, r.Items):
        return pb.Value(list_value=pb.ValueList(values=[value_to_proto(i) for i in v.values]))
    if isinstance(v, r.Relative):
        return pb.Value(relative_time=_relative(v))
    if isinstance(v, r.Today | r.Now):
        return pb.Value(moment=pb.MOMENT_TODAY if isinstance(v, r.Today) else pb.MOMENT_NOW)
    if isinstance(v, r.OnDate):
        d = v.value
        return pb.Value(date_value=pb.CalendarDate(year=d.year, month=d.month, day=d.day))
    if isinstance(v, r.AtTime):
        out = pb.Value()
        out.time_value.FromDatetime(v.value)
        return out
    return pb.Value(
        range_value=pb.ValueRange(low=value_to_proto(v.low), high=value_to_proto(v.high))
    )


def _count(t: r.CountTest) -> pb.CountCondition:
    return pb.CountCondition(operator=_OPS[t.op], value=t.value)


def _relative(v: r.Relative) -> pb.RelativeTime:
    return pb.RelativeTime(amount=v.amount, unit=_UNITS[v.unit])


# --- from protobuf -----------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, path: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.violation = e.Violation(path, reason, message)


def from_proto(msg: pb.Rule, field: str = "rule") -> r.Rule:
    """The rule ``msg`` describes (checked); RuleError naming paths under ``field``."""
    reader = _Reader()
    try:
        rule = reader.rule(msg, field, 1)
    except _Bad as bad:
        raise e.RuleError([bad.violation]) from None
    found = r.problems(rule)
    if found:
        raise e.RuleError([e.Violation(reader.path(n, field), why, m) for n, why, m in found])
    return rule


class _Reader:
    """Builds nodes and remembers the path each came from, for the checker's problems."""

    def __init__(self) -> None:
        self._paths: dict[int, tuple[Any, str]] = {}

    def path(self, node: object, default: str) -> str:
        return self._paths.get(id(node), (None, default))[1]

    def _at(self, node: Any, path: str) -> Any:
        self._paths[id(node)] = (node, path)  # the node is kept alive: its id stays unique
        return node

    def rule(self, msg: pb.Rule, path: str, depth: int) -> r.Rule:
        if depth > MAX_DEPTH:
            raise _Bad(path, e.RULE_TOO_LARGE, f"the rule is nested more than {MAX_DEPTH} deep")
        kind = msg.WhichOneof("node")
        at = f"{path}.{kind}"
        if kind in ("all", "any"):
            group = msg.all if kind == "all" else msg.any
            parts = tuple(
                self.rule(p, f"{at}.rules[{i}]", depth + 1) for i, p in enumerate(group.rules)
            )
            return self._at(r.And(parts) if kind == "all" else r.Or(parts), at)
        if kind == "negation":
            return self._at(r.Not(self.rule(msg.negation, at, depth + 1)), at)
        if kind == "comparison":
            return self._comparison(msg.comparison, at)
        if kind == "placed_order":
            p = msg.placed_order
            total = self._count(p.total, f"{at}.total") if p.HasField("total") else None
            count, within = self._count_of(p, at), self._within(p, at)
            return self._at(r.PlacedOrder(count, within, total, p.currency.upper()), at)
        if kind == "purchased":
            b = msg.purchased
            count, within = self._count_of(b, at), self._within(b, at)
            return self._at(r.Purchased(tuple(b.skus), count, within), at)
        if kind == "abandoned_cart":
            return self._at(r.AbandonedCart(self._within(msg.abandoned_cart, at)), at)
        if kind == "in_segment":
            return self._at(r.InSegment(msg.in_segment.segment_key), at)
        if kind == "random_bucket":
            return self._at(r.RandomBucket(msg.random_bucket.low, msg.random_bucket.high), at)
        raise _Bad(path, e.RULE_SYNTAX, "set one kind of rule (all, any, negation, comparison, …)")

    def _comparison(self, c: pb.Comparison, at: str) -> r.Rule:
        side = c.WhichOneof("operand")
        if side is None:
            raise _Bad(at, e.RULE_SYNTAX, "set field or anniversary")
        field = self._at(r.Field(normalize(getattr(c, side))), f"{at}.{side}")
        left = self._at(r.Anniversary(field), f"{at}.{side}") if side == "anniversary" else field
        if c.operator not in _OPS_BACK:
            raise _Bad(f"{at}.operator", e.RULE_SYNTAX, "set an operator")
        value = self.value(c.value, f"{at}.value", top=True) if c.HasField("value") else None
        return self._at(r.Comparison(left, _OPS_BACK[c.operator], value), at)

    def value(self, v: pb.Value, path: str, top: bool = False) -> Any:
        kind = v.WhichOneof("kind")
        at = f"{path}.{kind}"
        if kind == "string_value":
            return self._at(r.Text(v.string_value), at)
        if kind == "number_value":
            return self._at(r.Number(v.number_value), at)
        if kind == "bool_value":
            return self._at(r.Boolean(v.bool_value), at)
        if kind == "relative_time":
            return self._relative(v.relative_time, at)
        if kind == "moment" and v.moment in (pb.MOMENT_NOW, pb.MOMENT_TODAY):
            return self._at(r.Now() if v.moment == pb.MOMENT_NOW else r.Today(), at)
        if kind == "date_value":
            d = v.date_value
            try:
                return self._at(r.OnDate(date(d.year, d.month, d.day)), at)
            except ValueError:
                raise _Bad(at, e.BAD_DATE, "not a real date") from None
        if kind == "time_value":
            return self._at(r.AtTime(_instant(v.time_value.seconds, v.time_value.nanos, at)), at)
        if top and kind == "list_value":
            items = v.list_value.values
            return self._at(
                r.Items(tuple(self.value(i, f"{at}.values[{n}]") for n, i in enumerate(items))), at
            )
        if top and kind == "range_value":
            low = self.value(v.range_value.low, f"{at}.low")
            return self._at(r.Range(low, self.value(v.range_value.high, f"{at}.high")), at)
        if kind in ("list_value", "range_value"):
            raise _Bad(at, e.TYPE_MISMATCH, "lists and ranges hold single values")
        raise _Bad(path, e.RULE_SYNTAX, "set a value")

    def _count(self, t: pb.CountCondition, at: str) -> r.CountTest:
        if t.operator not in _OPS_BACK:
            raise _Bad(f"{at}.operator", e.RULE_SYNTAX, "set an operator")
        return self._at(r.CountTest(_OPS_BACK[t.operator], t.value), at)

    def _count_of(self, msg: Any, at: str) -> r.CountTest:
        """The count condition of a function (count >= 1 when unset)."""
        if not msg.HasField("count"):
            return r.CountTest(r.Op.GE, 1)
        return self._count(msg.count, f"{at}.count")

    def _relative(self, t: pb.RelativeTime, at: str) -> r.Relative:
        if t.unit not in _UNITS_BACK:
            raise _Bad(f"{at}.unit", e.BAD_DURATION, "set a unit")
        return self._at(r.Relative(t.amount, _UNITS_BACK[t.unit]), at)

    def _within(self, msg: Any, at: str) -> r.Relative | None:
        return self._relative(msg.within, f"{at}.within") if msg.HasField("within") else None


def _instant(seconds: int, nanos: int, at: str) -> datetime:
    """A Timestamp as an aware datetime (microseconds); BAD_DATE outside years 1..9999."""
    if not 0 <= nanos < 1_000_000_000:
        raise _Bad(at, e.BAD_DATE, "nanos are 0..999,999,999")
    try:
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise _Bad(at, e.BAD_DATE, "times lie in the years 1 to 9999") from None
