"""Hypothesis strategies for one contact's facts (domain/facts.py) and for instants around a
few interesting days (DST changes, Feb 29): the rule tests evaluate random rules over them."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from services.segmentation.domain.facts import (
    AttributeValue,
    CartFact,
    Facts,
    OrderFact,
    PurchaseFact,
    RfmScore,
)
from shared.domain import rfm

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
TEXTS = (
    "en",
    "de",
    "x.com",
    "subscribed",
    "unsubscribed",
    "pending",
    "Europe/Berlin",
    "champions",
    "hibernating",
)
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
        rfm={
            cur: RfmScore(r, f, draw(st.integers(1, 5)), rfm.group(r, f))
            for cur in draw(st.lists(st.sampled_from(CURRENCIES), unique=True))
            for r, f in [(draw(st.integers(1, 5)), draw(st.integers(1, 5)))]
        },
    )
