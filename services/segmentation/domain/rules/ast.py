"""The rule tree: what a parsed rule (or a protobuf ``Rule``) is, as frozen dataclasses.

Two trees are equal when they mean the same rule written the same way: ``parse(format(r)) ==
r``. Every node may carry the line and column it was written at (``pos``); positions take no
part in equality, so a rule read from protobuf (no positions) equals the same rule read from
text.

Conditions (a ``Rule``): ``And`` / ``Or`` (two or more parts, kept as written: ``a AND (b AND
c)`` stays nested), ``Not``, ``Comparison`` (an operand, an operator and a value), and the
behaviour functions ``PlacedOrder``, ``Purchased``, ``AbandonedCart``, ``InSegment``,
``RandomBucket``. A bare boolean field (``recovered``) is the comparison ``recovered = true``.

Operands: ``Field`` (a path such as ``orders_count`` or ``attributes.birthday``) and
``Anniversary`` (``anniversary(<time field>)``, a calendar date).

Values: ``Text``, ``Number`` (a double), ``Boolean``, ``Items`` (the list of ``IN``),
``Relative`` (``-30d``: a signed amount of a unit, relative to now; ``within 90d`` uses it
unsigned), ``Today``, ``Now``, ``OnDate`` (``date '2026-11-27'``), ``AtTime`` (``date
'2026-11-27T09:00:00Z'``, always UTC) and ``Range`` (the two bounds of ``BETWEEN``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime


class Op(enum.Enum):
    """Comparison operators, spelled as the text syntax writes them."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    BETWEEN = "BETWEEN"
    IN = "IN"
    NOT_IN = "NOT IN"
    CONTAINS = "CONTAINS"
    IS_SET = "IS SET"
    IS_NOT_SET = "IS NOT SET"


ORDERING = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE})
PRESENCE = frozenset({Op.IS_SET, Op.IS_NOT_SET})


class Unit(enum.Enum):
    """Units of a relative time. A day is 86,400 seconds and a year 365 days, exactly: no
    calendar arithmetic, no months (write 30d)."""

    SECONDS = "s"
    MINUTES = "m"
    HOURS = "h"
    DAYS = "d"
    WEEKS = "w"
    YEARS = "y"

    @property
    def seconds(self) -> int:
        return _UNIT_SECONDS[self]

    @property
    def days(self) -> int | None:
        """Whole days in one unit, or None for units shorter than a day."""
        s = _UNIT_SECONDS[self]
        return s // 86_400 if s % 86_400 == 0 else None


_UNIT_SECONDS = {
    Unit.SECONDS: 1,
    Unit.MINUTES: 60,
    Unit.HOURS: 3_600,
    Unit.DAYS: 86_400,
    Unit.WEEKS: 7 * 86_400,
    Unit.YEARS: 365 * 86_400,
}


@dataclass(frozen=True, slots=True)
class Pos:
    """Where a node was written (1-based line and column)."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Node:
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text(Node):
    value: str


@dataclass(frozen=True, slots=True)
class Number(Node):
    value: float


@dataclass(frozen=True, slots=True)
class Boolean(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class Items(Node):
    values: tuple[Text | Number, ...]


@dataclass(frozen=True, slots=True)
class Relative(Node):
    amount: int
    unit: Unit
    seconds: int = field(init=False, compare=False, repr=False)  # amount * the unit's

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", self.amount * self.unit.seconds)


@dataclass(frozen=True, slots=True)
class Today(Node):
    pass


@dataclass(frozen=True, slots=True)
class Now(Node):
    pass


@dataclass(frozen=True, slots=True)
class OnDate(Node):
    value: date


@dataclass(frozen=True, slots=True)
class AtTime(Node):
    value: datetime  # aware, UTC


Scalar = Text | Number | Boolean | Relative | Today | Now | OnDate | AtTime


@dataclass(frozen=True, slots=True)
class Range(Node):
    low: Scalar
    high: Scalar


Value = Scalar | Items | Range


# --- operands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field(Node):
    path: str


@dataclass(frozen=True, slots=True)
class Anniversary(Node):
    field: Field


Operand = Field | Anniversary


# --- conditions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison(Node):
    left: Operand
    op: Op
    value: Value | None = None  # None for IS SET / IS NOT SET


@dataclass(frozen=True, slots=True)
class And(Node):
    parts: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Or(Node):
    parts: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Not(Node):
    part: Rule


@dataclass(frozen=True, slots=True)
class CountTest(Node):
    """``count >= 2`` inside a function; also ``total >= 5000`` (minor units)."""

    op: Op
    value: int


AT_LEAST_ONE = CountTest(Op.GE, 1)


@dataclass(frozen=True, slots=True)
class PlacedOrder(Node):
    """``placed_order(count >= 2, total >= 5000, currency = 'EUR', within 90d)``: the number
    of orders, not cancelled, placed within the window (all of them without one), of at least
    that total and in that currency when given, passes the count test."""

    count: CountTest = AT_LEAST_ONE
    within: Relative | None = None
    total: CountTest | None = None
    currency: str = ""


@dataclass(frozen=True, slots=True)
class Purchased(Node):
    """``purchased(sku = 'TEA-1', count >= 2, within 1y)``: orders (not cancelled) that
    contained one of the SKUs, within the window, pass the count test."""

    skus: tuple[str, ...]
    count: CountTest = AT_LEAST_ONE
    within: Relative | None = None


@dataclass(frozen=True, slots=True)
class AbandonedCart(Node):
    """``abandoned_cart(within 7d)``: a cart was abandoned within the window (ever without)."""

    within: Relative | None = None


@dataclass(frozen=True, slots=True)
class InSegment(Node):
    key: str


@dataclass(frozen=True, slots=True)
class RandomBucket(Node):
    """``random_bucket(0, 10)``: low <= the contact's fixed bucket (0..99) < high."""

    low: int
    high: int


Behaviour = PlacedOrder | Purchased | AbandonedCart | InSegment | RandomBucket
Rule = And | Or | Not | Comparison | Behaviour


def children(rule: Rule) -> tuple[Rule, ...]:
    """The conditions directly inside ``rule``."""
    if isinstance(rule, And | Or):
        return rule.parts
    if isinstance(rule, Not):
        return (rule.part,)
    return ()


def walk(rule: Rule) -> list[Rule]:
    """Every condition of ``rule``, itself first (iterative: safe on any depth)."""
    out: list[Rule] = []
    stack = [rule]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(children(node)))
    return out


def bounds(value: Value | None) -> tuple[Scalar, ...]:
    """The scalar values a comparison's value holds (both bounds of a range, each item)."""
    if value is None:
        return ()
    if isinstance(value, Range):
        return (value.low, value.high)
    if isinstance(value, Items):
        return value.values
    return (value,)
