"""Hypothesis strategies for valid rules: any literal (for round trips), or values close to
the generated facts (fact_strategies.py), so that conditions are sometimes true and sometimes
false; ``timely`` rules lean on conditions that move with the clock."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import strategies as st

from services.segmentation.domain import rules as r
from services.segmentation.tests.fact_strategies import (
    CURRENCIES,
    SEGMENTS,
    SKUS,
    TAGS,
    TEXT_CHARS,
    TEXTS,
    instants,
)

NUMBER_FIELDS = (
    "orders_count",
    "refunds_count",
    "revenue.EUR",
    "aov.EUR",
    "aov.JPY",
    "rfm_recency.EUR",
    "rfm_monetary.JPY",
)
TIME_FIELDS = ("created_at", "first_order_at", "last_order_at", "attributes.birthday")
TEXT_FIELDS = (
    "locale",
    "time_zone",
    "email_domain",
    "consent.email",
    "consent.sms",
    "rfm_group.EUR",
)
BOOL_FIELDS = ("archived", "recovered", "suppressed.email", "attributes.vip")
ANY_FIELDS = ("attributes.score", "attributes.plan", "attributes.birthday", "attributes.vip")


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
