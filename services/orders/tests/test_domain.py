"""Pure domain tests: money, the order and cart deciders, RFM scoring. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.orders.domain import cart as carts
from services.orders.domain import money
from services.orders.domain import order as orders
from shared.domain import rfm
from shared.domain.errors import Invalid, Precondition

AT = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "code", "minor"),
    [
        ("19.99", "USD", 1999),
        ("19.9", "USD", 1990),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("0", "EUR", 0),
    ],
)
def test_decimal_amounts_become_exact_minor_units(text: str, code: str, minor: int) -> None:
    assert money.parse_decimal(text, code, "f") == minor


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("19.999", "USD"),
        ("1.5", "JPY"),
        ("-1", "USD"),
        ("NaN", "USD"),
        ("1e400", "USD"),
        ("", "USD"),
    ],
)
def test_decimal_amounts_that_are_not_money_are_refused(text: str, code: str) -> None:
    with pytest.raises(Invalid):
        money.parse_decimal(text, code, "f")


def test_currencies_are_iso_4217_and_not_metals() -> None:
    assert money.currency(" eur ") == "EUR"
    for bad in ("XAU", "EURO", "", "xyz"):
        with pytest.raises(Invalid) as e:
            money.currency(bad)
        assert e.value.reason == "UNKNOWN_CURRENCY"


def _order(total_items: list[dict[str, int | str]]) -> orders.Order:
    decided = orders.decide_place("o1", "c1", "EUR", total_items, shipping=0, placed_at=AT)
    return orders.evolve(None, *decided[0], AT, 0)


def test_refund_lines_are_valued_pro_rata_and_bounded() -> None:
    o = _order([{"sku": "A", "quantity": 3, "unit_price": 1000, "discount": 300}])
    o = orders.evolve(o, *orders.decide_pay(o, 0, "")[0], AT, 1)
    t, d = orders.decide_refund(o, 0, [{"sku": "A", "quantity": 1}], "", "")[0]
    assert d["amount"] == 900 and d["lines"] == [{"sku": "A", "quantity": 1}]
    o = orders.evolve(o, t, d, AT, 2)
    with pytest.raises(Invalid):
        orders.decide_refund(o, 0, [{"sku": "A", "quantity": 3}], "", "")
    assert orders.decide_refund(o, 0, [], "", d["refund_id"]) == []  # the same refund id: no-op


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=12))
def test_refunded_total_never_exceeds_paid(amounts: list[int]) -> None:
    o = _order([{"sku": "A", "quantity": 2, "unit_price": 2500, "discount": 0}])
    o = orders.evolve(o, *orders.decide_pay(o, 0, "")[0], AT, 1)
    for n, amount in enumerate(amounts):
        try:
            decided = orders.decide_refund(o, amount, [], "", "")
        except (Invalid, Precondition):
            continue
        o = orders.evolve(o, *decided[0], AT, n + 2)
        assert o.refunded <= o.paid
    assert o.refunded <= o.paid
    assert (o.state == "REFUNDED") == (o.refunded == o.paid)


def test_cart_adds_merge_and_abandon_only_when_idle_with_items() -> None:
    c = carts.evolve(None, *carts.decide_create("k", "c", "usd", AT)[0], AT, 0)
    assert carts.decide_abandon(c, AT + timedelta(hours=5), timedelta(hours=1)) == []  # empty
    for v, q in ((1, 1), (2, 2)):
        c = carts.evolve(
            c, *carts.decide_add(c, "k", {"sku": "A", "quantity": q, "unit_price": 5})[0], AT, v
        )
    assert [i["quantity"] for i in c.items] == [3] and c.subtotal == 15
    assert carts.decide_abandon(c, AT + timedelta(minutes=59), timedelta(hours=1)) == []
    [(t, d)] = carts.decide_abandon(c, AT + timedelta(hours=1), timedelta(hours=1))
    assert t == carts.ABANDONED and d["subtotal"] == 15
    c = carts.evolve(c, t, d, AT + timedelta(hours=1), 3)
    assert carts.decide_abandon(c, AT + timedelta(days=9), timedelta(hours=1)) == []  # once


def test_rfm_scores_are_quintiles_with_ties_shared() -> None:
    assert [rfm.score(b, 10) for b in range(10)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert rfm.score(0, 1) == 1
    with pytest.raises(ValueError):
        rfm.score(3, 3)
    assert rfm.group(5, 5) == "champions" and rfm.group(1, 1) == "hibernating"
    assert rfm.group(5, 1) == "new_customers" and rfm.group(1, 5) == "cannot_lose_them"


def _place(items: list[dict[str, int | str]], shipping: int = 0) -> list[orders.Event]:
    return orders.decide_place("o", "c", "EUR", items, placed_at=AT, shipping=shipping)


@pytest.mark.parametrize(
    ("items", "extra"),
    [
        ([{"sku": "A", "quantity": 10_000, "unit_price": 10**15}], {}),  # a line of 10^19
        (
            [{"sku": "A", "quantity": 1, "unit_price": 10**15}] * 1
            + [{"sku": "B", "quantity": 1, "unit_price": 1}],
            {},
        ),
        ([{"sku": "A", "quantity": 1, "unit_price": 10**15}], {"shipping": 1}),
        ([{"sku": "A", "quantity": 1, "unit_price": 10**15 + 1}], {}),
    ],
)
def test_an_order_worth_more_than_max_amount_is_refused(
    items: list[dict[str, int | str]], extra: dict[str, int]
) -> None:
    with pytest.raises(Invalid) as e:
        _place(items, **extra)
    assert e.value.reason == "AMOUNT_TOO_LARGE"


def test_an_order_of_exactly_max_amount_is_placed() -> None:
    [(_, data)] = _place([{"sku": "A", "quantity": 1, "unit_price": money.MAX_AMOUNT}])
    assert data["total"] == money.MAX_AMOUNT


def test_a_cart_cannot_grow_beyond_max_amount() -> None:
    cart = carts.evolve(
        None, carts.CREATED, {"cart_id": "k", "contact_id": "c", "currency": "EUR"}, AT, 0
    )
    half = {"sku": "A", "quantity": 1, "unit_price": money.MAX_AMOUNT // 2 + 1}
    [(t, d)] = carts.decide_add(cart, "k", half)
    cart = carts.evolve(cart, t, d, AT, 1)
    for raw in (half, {**half, "sku": "B"}):  # the same line again, or a second line
        with pytest.raises(Invalid) as e:
            carts.decide_add(cart, "k", raw)
        assert e.value.reason == "AMOUNT_TOO_LARGE"
    with pytest.raises(Invalid) as e:
        carts.decide_change(cart, "k", {**half, "quantity": 2})
    assert e.value.reason == "AMOUNT_TOO_LARGE"


def test_error_texts_quote_only_a_prefix_of_a_value() -> None:
    with pytest.raises(Invalid) as e:
        money.currency("X" * 1_000_000)
    assert len(e.value.message) < 100
