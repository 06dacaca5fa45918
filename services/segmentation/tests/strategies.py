"""Hypothesis strategies for the rule tests: valid rules (any literal, for round trips; or
values close to the generated facts, so that conditions are sometimes true and sometimes
false), facts and instants around a few interesting days (DST changes, Feb 29)."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from services.segmentation.domain import rules as r
from services.segmentation.domain.facts import (
    AttributeValue,
    CartFact,
    Facts,
    OrderFact,
    PurchaseFact,
)

# Zones whose clocks never change at midnight in the years tested (Lord Howe moves by 30
# minutes, Kathmandu is +05:45, Chatham +12:45/+13:45).
ZONES = (
    "",
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Los_Angeles",
)
# Days around DST changes (Europe, the US, Lord Howe) and leap days.
BASES = tuple(
    datetime(*ymd, 12, tzinfo=UTC)
    for ymd in (
        (2024, 2, 28),
        (2024, 3, 10),
        (2024, 3, 31),
        (2024, 4, 7),
        (2025, 2, 28),
        (2025, 10, 26),
        (2025, 11, 2),
        (2026, 3, 29),
        (2027, 12, 31),
        (2028, 2, 29),
    )
)
TAGS = ("vip", "staff", "b2b")
TEXTS = ("en", "de", "x.com", "subscribed", "unsubscribed", "pending", "Europe/Berlin")
SKUS = ("TEA-1", "TEA-2", "MUG")
SEGMENTS = ("vip", "churn")
CURRENCIES = ("EUR", "JPY")
TEXT_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
BIRTHDAYS = (
    datetime(2000, 2, 29, tzinfo=UTC),
    datetime(1996, 2, 29, 12, tzinfo=UTC),
    datetime(1990, 3, 1, tzinfo=UTC),
    datetime(1985, 12, 31, 23, 30, tzinfo=UTC),
)

NUMBER_FIELDS = ("orders_count", "refunds_count", "revenue.EUR", "aov.EUR", "aov.JPY")
TIME_FIELDS = ("created_at", "first_order_at", "last_order_at", "attributes.birthday")
TEXT_FIELDS = ("locale", "time_zone", "email_domain", "consent.email", "consent.sms")
BOOL_FIELDS = ("archived", "recovered", "suppressed.email", "attributes.vip")
ANY_FIELDS = ("attributes.score", "attributes.plan", "attributes.birthday", "attributes.vip")


# --- instants --------------------------------------------------------------------------------


def offsets(max_days: int = 40) -> st.SearchStrategy[timedelta]:
    """Offsets that hit interesting instants: whole days and hours, and arbitrary ones."""
    return st.one_of(
        st.integers(-max_days, max_days).map(lambda d: timedelta(days=d)),
        st.integers(-max_days * 24, max_days * 24).map(lambda h: timedelta(hours=h)),
        st.integers(-max_days * 86_400, max_days * 86_400).map(lambda s: timedelta(seconds=s)),
    )


@functools.cache
def instants(base: datetime, max_days: int = 40) -> st.SearchStrategy[datetime]:
    return offsets(max_days).map(lambda o: base + o)


# --- rules -------------------------------------------------------------------------------------


def relatives(max_amount: int = 40, signed: bool = True) -> st.SearchStrategy[r.Relative]:
    low = -max_amount if signed else 1
    units = st.sampled_from([r.Unit.HOURS, r.Unit.DAYS, r.Unit.DAYS, r.Unit.WEEKS])
    return st.builds(r.Relative, st.integers(low, max_amount), units)


def _any_relative() -> st.SearchStrategy[r.Relative]:
    def within_limit(unit: r.Unit) -> st.SearchStrategy[r.Relative]:
        most = 200 * 365 * 86_400 // unit.seconds
        return st.builds(r.Relative, st.integers(-most, most), st.just(unit))

    return st.one_of(*(within_limit(u) for u in r.Unit))


def _time_values(base: datetime, wide: bool) -> st.SearchStrategy[r.Scalar]:
    return st.one_of(
        relatives() if not wide else _any_relative(),
        st.just(r.Today()),
        st.just(r.Now()),
        st.dates(date(2000, 1, 1), date(2030, 12, 31)).map(r.OnDate)
        if wide
        else instants(base).map(lambda t: r.OnDate(t.date())),
        (st.datetimes(timezones=st.just(UTC)) if wide else instants(base)).map(r.AtTime),
    )


def _date_values(wide: bool) -> st.SearchStrategy[r.Scalar]:
    days = st.integers(-400, 400) if wide else st.integers(-3, 12)
    unit = st.sampled_from([r.Unit.DAYS, r.Unit.DAYS, r.Unit.WEEKS])
    years = st.integers(-200, 200).map(lambda n: r.Relative(n, r.Unit.YEARS))
    return st.one_of(
        st.just(r.Today()),
        st.builds(r.Relative, days, unit),
        *([years] if wide else []),
        st.dates(date(2023, 1, 1), date(2029, 12, 31)).map(r.OnDate),
    )


def _numbers(wide: bool) -> st.SearchStrategy[r.Number]:
    if wide:
        return st.floats(allow_nan=False, allow_infinity=False).map(r.Number)
    return st.sampled_from([0, 1, 2, 3, 5, 1000, 1500, 2500, 0.5, -1]).map(
        lambda n: r.Number(float(n))
    )


def _texts(wide: bool) -> st.SearchStrategy[r.Text]:
    if wide:
        return st.text(TEXT_CHARS, max_size=20).map(r.Text)
    return st.sampled_from(TEXTS + TAGS).map(r.Text)


def _ordered(
    lefts: st.SearchStrategy[Any], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[r.Rule]:
    ops = st.sampled_from([r.Op.EQ, r.Op.NE, r.Op.LT, r.Op.LE, r.Op.GT, r.Op.GE])
    return st.one_of(
        st.builds(r.Comparison, lefts, ops, values),
        st.builds(
            lambda left, a, b: r.Comparison(left, r.Op.BETWEEN, r.Range(a, b)),
            lefts,
            values,
            values,
        ),
    )


def _anniversaries() -> st.SearchStrategy[r.Anniversary]:
    paths = st.sampled_from(("attributes.birthday", "created_at", "first_order_at"))
    return paths.map(lambda p: r.Anniversary(r.Field(p)))


def comparisons(base: datetime, wide: bool) -> st.SearchStrategy[r.Rule]:
    field = st.sampled_from
    presence = st.sampled_from([r.Op.IS_SET, r.Op.IS_NOT_SET])
    nums, texts = _numbers(wide), _texts(wide)
    return st.one_of(
        _ordered(field((*NUMBER_FIELDS, "attributes.score")).map(r.Field), nums),
        _ordered(field(TIME_FIELDS).map(r.Field), _time_values(base, wide)),
        st.builds(
            r.Comparison,
            field((*NUMBER_FIELDS, "attributes.score")).map(r.Field),
            st.sampled_from([r.Op.IN, r.Op.NOT_IN]),
            st.lists(nums, min_size=1, max_size=3).map(lambda v: r.Items(tuple(v))),
        ),
        st.builds(
            r.Comparison,
            field((*TEXT_FIELDS, "attributes.plan")).map(r.Field),
            st.sampled_from([r.Op.EQ, r.Op.NE, r.Op.IN, r.Op.NOT_IN]),
            texts,
        ).map(_listed),
        st.builds(
            r.Comparison,
            field(BOOL_FIELDS).map(r.Field),
            st.sampled_from([r.Op.EQ, r.Op.NE]),
            st.booleans().map(r.Boolean),
        ),
        st.builds(r.Comparison, st.just(r.Field("tags")), st.just(r.Op.CONTAINS), texts),
        st.builds(
            r.Comparison,
            field(
                TIME_FIELDS + ANY_FIELDS + TEXT_FIELDS + NUMBER_FIELDS + ("tags", "recovered")
            ).map(r.Field),
            presence,
        ),
        _ordered(_anniversaries(), _date_values(wide)),
        st.builds(r.Comparison, _anniversaries(), presence),
    )


def _listed(c: r.Comparison) -> r.Comparison:
    if c.op in (r.Op.IN, r.Op.NOT_IN) and isinstance(c.value, r.Text):
        return r.Comparison(c.left, c.op, r.Items((c.value, r.Text("de"))))
    return c


def behaviours(wide: bool) -> st.SearchStrategy[r.Rule]:
    window = st.none() | relatives(signed=False)
    counts = st.builds(
        r.CountTest,
        st.sampled_from([r.Op.GE, r.Op.GT, r.Op.EQ, r.Op.LT, r.Op.LE, r.Op.NE]),
        st.integers(0, 3),
    )
    totals = st.none() | st.builds(
        r.CountTest, st.sampled_from([r.Op.GE, r.Op.LT]), st.sampled_from([0, 1000, 2000])
    )
    skus = st.lists(
        st.sampled_from(SKUS) if not wide else st.text(TEXT_CHARS, min_size=1, max_size=8),
        min_size=1,
        max_size=3,
        unique=True,
    )
    keys = st.sampled_from(SEGMENTS) if not wide else st.text(TEXT_CHARS, min_size=1, max_size=10)
    return st.one_of(
        st.builds(r.PlacedOrder, counts, window, totals, st.sampled_from(("", *CURRENCIES))),
        st.builds(r.Purchased, skus.map(tuple), counts, window),
        st.builds(r.AbandonedCart, window),
        st.builds(r.InSegment, keys),
        st.tuples(st.integers(0, 100), st.integers(0, 100)).map(
            lambda t: r.RandomBucket(min(t), max(t))
        ),
    )


def clocked(base: datetime) -> st.SearchStrategy[r.Rule]:
    """Conditions whose answer moves with the clock: relative times, today, windows,
    anniversaries."""
    window = relatives(signed=False)
    return st.one_of(
        _ordered(
            st.sampled_from(TIME_FIELDS).map(r.Field), st.one_of(relatives(), st.just(r.Today()))
        ),
        _ordered(_anniversaries(), _date_values(False)),
        st.builds(
            r.PlacedOrder,
            st.builds(r.CountTest, st.sampled_from([r.Op.GE, r.Op.EQ]), st.integers(0, 2)),
            window,
        ),
        st.builds(
            r.Purchased,
            st.lists(st.sampled_from(SKUS), min_size=1, max_size=2, unique=True).map(tuple),
            within=window,
        ),
        st.builds(r.AbandonedCart, window),
    )


@functools.cache
def rules(base: datetime, wide: bool = False, timely: bool = False) -> st.SearchStrategy[r.Rule]:
    """Valid rules; ``wide``: any literal (round trips), else values near ``base``;
    ``timely``: mostly conditions that move with the clock."""
    leaves = st.one_of(comparisons(base, wide), behaviours(wide))
    if timely:
        leaves = st.one_of(clocked(base), clocked(base), clocked(base), leaves)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda p: r.And(tuple(p))),
            st.lists(inner, min_size=2, max_size=3).map(lambda p: r.Or(tuple(p))),
            inner.map(r.Not),
        ),
        max_leaves=10 if wide else 4 if timely else 6,
    )


# --- facts -------------------------------------------------------------------------------------


def _ids(prefix: int) -> st.SearchStrategy[str]:
    return st.integers(0, 2**32).map(lambda n: str(uuid.UUID(int=(prefix << 96) | n)))


@functools.cache
def facts(
    base: datetime, contact_id: str | None = None, live: bool = False
) -> st.SearchStrategy[Facts]:
    """One contact's facts (the same strategy object for the same arguments: building
    strategies is what costs most in these tests)."""
    return _facts(base, contact_id, live)


@st.composite
def _facts(
    draw: st.DrawFn, base: datetime, contact_id: str | None = None, live: bool = False
) -> Facts:
    """One contact's facts, with times within 60 days of ``base`` (some years back for the
    birthday); ``live``: never erased or merged."""
    when = lambda: base + draw(offsets(60))  # noqa: E731
    maybe = lambda s: draw(st.none() | s)  # noqa: E731
    cid = contact_id or draw(_ids(1))
    order_ids = draw(st.lists(_ids(2), max_size=4, unique=True))
    orders = tuple(
        OrderFact(
            oid,
            draw(st.sampled_from(CURRENCIES)),
            total := draw(st.sampled_from([0, 999, 1000, 2500])),
            draw(st.integers(0, total)),
            when(),
            draw(st.booleans()),
        )
        for oid in order_ids
    )
    purchases = tuple(
        PurchaseFact(o.order_id, sku, draw(st.integers(1, 3)), o.place_time)
        for o in orders
        for sku in draw(st.lists(st.sampled_from(SKUS), max_size=2, unique=True))
    )
    carts = tuple(
        CartFact(cart, maybe(st.just(when())), draw(st.booleans()))
        for cart in draw(st.lists(_ids(3), max_size=3, unique=True))
    )
    attributes: dict[str, AttributeValue] = {}
    if draw(st.booleans()):
        years = draw(st.integers(1, 40))
        near = (base + draw(offsets(20))).replace(year=base.year - years, day=1)
        near += timedelta(days=draw(st.integers(0, 30)))
        attributes["birthday"] = draw(st.sampled_from([near, near, *BIRTHDAYS]))
    typed: list[tuple[str, st.SearchStrategy[AttributeValue]]] = [
        ("score", st.sampled_from([0, 1, 2.5, 1000, -1])),
        ("plan", st.sampled_from(TEXTS)),
        ("vip", st.booleans()),
    ]
    for name, values in typed:  # sometimes of another type than the rules expect
        if draw(st.booleans()):
            odd: st.SearchStrategy[AttributeValue] = st.sampled_from(["de", 3, True])
            attributes[name] = draw(st.one_of(values, odd))
    return Facts(
        contact_id=cid,
        created_at=maybe(st.just(when())),
        tags=frozenset(draw(st.lists(st.sampled_from(TAGS), max_size=2))),
        locale=draw(st.sampled_from(("", "en", "de"))),
        time_zone=draw(st.sampled_from(ZONES)),
        email_domain=draw(st.sampled_from(("", "x.com"))),
        attributes=attributes,
        consent={
            ch: draw(st.sampled_from(("subscribed", "unsubscribed", "pending")))
            for ch in draw(st.lists(st.sampled_from(("email", "sms")), unique=True))
        },
        suppressed=frozenset(draw(st.lists(st.sampled_from(("email", "sms")), unique=True))),
        archived=draw(st.booleans()),
        erased=not live and draw(st.sampled_from((False,) * 9 + (True,))),
        merged_into="" if live else draw(st.sampled_from(("",) * 9 + (str(uuid.UUID(int=7)),))),
        orders=orders,
        purchases=purchases,
        carts=carts,
        segments=frozenset(draw(st.lists(st.sampled_from(SEGMENTS), unique=True))),
    )
