"""Shopify webhooks over real HTTP: signature and shop checks, mapping, idempotent redelivery,
payloads bound to their topic, out-of-order delivery kept and applied later, and bad payloads that
write nothing."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.orders.v1 import orders_pb2 as pb
from services.orders.domain import order as orders
from services.orders.tests.conftest import Env
from services.orders.tests.shopify_samples import (
    FULFILMENT,
    ORDER,
    OTHER_SHOP,
    PAID,
    SHOP,
    post,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(env: Env) -> Env:
    """The suite's webhook endpoint, serving SHOP (the adapter serves no shop unless told)."""
    env.shopify.shops = frozenset({SHOP})
    return env


async def test_order_lifecycle_from_webhooks_applied_once(env: Env) -> None:
    status, body = await post(env, "orders/create", ORDER)
    assert (status, body["result"]) == (200, "applied")
    order_id = body["order_id"]
    assert order_id == env.shopify.order_id(SHOP, ORDER["id"])
    o = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=order_id))).order
    assert [(i.sku, i.quantity, i.unit_price, i.discount) for i in o.items] == [
        ("IPOD-342-N", 2, 1999, 100),
        ("shopify-line-141249953214522974", 1, 350, 0),
    ]
    assert (o.shipping, o.tax, o.total, o.currency) == (
        500,
        240,
        3998 - 100 + 350 + 500 + 240,
        "USD",
    )
    assert o.external_ref == f"shopify:{SHOP}:{ORDER['id']}"
    assert o.place_time.ToJsonString() == "2026-11-20T15:15:00Z"
    placed = (await env.store.read_stream(orders.stream_of(order_id)))[0]
    assert placed.data["place_time"] == "2026-11-20T15:15:00Z"  # Shopify's -05:00, in UTC
    # The customer was resolved through the contacts service (a guest contact was created).
    contact = (
        await env.contacts.GetContact(cpb.GetContactRequest(contact_id=o.contact_id))
    ).contact
    assert contact.email == "jon.snow@example.com"

    count = await env.event_count()
    status, body = await post(env, "orders/create", ORDER)  # delivered twice
    assert (status, body["order_id"]) == (200, order_id)
    assert await env.event_count() == count

    assert (await post(env, "orders/paid", PAID))[0] == 200
    fulfilment = {
        "id": 255858046,
        "order_id": ORDER["id"],
        "tracking_company": "USPS",
        "tracking_number": "9400111899223197428490",
        "tracking_url": "https://tools.usps.com/x",
    }
    assert (await post(env, "fulfillments/create", fulfilment))[0] == 200
    refund = {
        "id": 509562969,
        "order_id": ORDER["id"],
        "note": "damaged",
        "refund_line_items": [
            {
                "line_item_id": 866550311766439020,
                "quantity": 1,
                "line_item": {"id": 866550311766439020, "sku": "IPOD-342-N"},
            }
        ],
        "transactions": [
            {"kind": "refund", "status": "success", "amount": "18.99", "currency": "USD"},
            {"kind": "refund", "status": "failure", "amount": "99.00", "currency": "USD"},
        ],
    }
    assert (await post(env, "refunds/create", refund))[0] == 200
    count = await env.event_count()
    for topic, payload in (
        ("orders/paid", PAID),
        ("fulfillments/create", fulfilment),
        ("refunds/create", refund),
    ):
        status, body = await post(env, topic, payload)  # every one delivered twice
        assert status == 200, body
    assert await env.event_count() == count
    o = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=order_id))).order
    assert (o.state, o.paid, o.refunded) == (pb.ORDER_STATE_SHIPPED, o.total, 1899)
    assert [(s.carrier, s.tracking_number) for s in o.shipments] == [
        ("USPS", "9400111899223197428490")
    ]
    delivered = {**fulfilment, "shipment_status": "delivered"}
    assert (await post(env, "fulfillments/update", delivered))[0] == 200
    o = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=order_id))).order
    assert o.state == pb.ORDER_STATE_DELIVERED


async def test_paid_at_creation_then_orders_paid_is_applied_once(env: Env) -> None:
    paid = {**ORDER, "id": 1001, "financial_status": "paid"}
    status, body = await post(env, "orders/create", paid)
    assert status == 200
    count = await env.event_count()
    status, body = await post(env, "orders/paid", paid)  # same request id as create's payment
    assert (status, body["result"]) == (200, "applied")
    assert await env.event_count() == count
    o = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=body["order_id"]))).order
    assert o.state == pb.ORDER_STATE_PAID


async def test_unsigned_or_badly_signed_webhooks_are_refused(env: Env) -> None:
    before = await env.event_count()
    body = orjson.dumps(ORDER)
    assert (await post(env, "orders/create", ORDER, signature=""))[0] == 401
    assert (await post(env, "orders/create", ORDER, signature="bm90IHRoZSBzaWduYXR1cmU="))[0] == 401
    tampered = body.replace(b'"19.99"', b'"0.01"', 1)
    assert (await post(env, "orders/create", None, raw=tampered, signature=env.shopify.sign(body)))[
        0
    ] == 401
    assert await env.event_count() == before


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        (lambda o: o.update(currency="ZZZ"), 422, "UNKNOWN_CURRENCY"),
        (lambda o: o["line_items"][0].update(price="19.999"), 422, "INVALID_AMOUNT"),
        (lambda o: o["line_items"][0].update(price="-1.00"), 422, "NEGATIVE_AMOUNT"),
        (lambda o: o["line_items"][0].update(price="abc"), 422, "INVALID_AMOUNT"),
        (lambda o: o["line_items"][0].update(quantity=0), 422, "INVALID_QUANTITY"),
        (lambda o: o["line_items"][0].update(quantity=1.5), 422, "INVALID_FIELD"),
        (lambda o: o.update(customer="abc"), 422, "INVALID_FIELD"),
        (lambda o: o.update(line_items={}), 422, "INVALID_FIELD"),
        (lambda o: o.update(line_items=["x"]), 422, "INVALID_FIELD"),
        (lambda o: o.update(total_shipping_price_set="5.00"), 422, "INVALID_FIELD"),
        (lambda o: o["line_items"][0].update(price=19.99), 422, "INVALID_FIELD"),
        (lambda o: o["line_items"][0].update(price="1e999999"), 422, "INVALID_AMOUNT"),
        (lambda o: o["line_items"][0].update(price="1e300000"), 422, "INVALID_AMOUNT"),
        (lambda o: o["line_items"][0].update(price="9" * 17), 422, "INVALID_AMOUNT"),
        (lambda o: o.update(total_tax="Infinity"), 422, "INVALID_AMOUNT"),
        (lambda o: o.update(id="820982911946154508"), 422, "INVALID_FIELD"),
        (lambda o: o.update(created_at="2026-11-20T10:15:00"), 422, "INVALID_TIME"),
        (lambda o: o.update(created_at="1999-12-31T23:00:00Z"), 422, "TIME_OUT_OF_RANGE"),
        (lambda o: o.update(created_at="2100-01-01T00:00:00Z"), 422, "TIME_OUT_OF_RANGE"),
        (lambda o: o.update(created_at="yesterday"), 422, "INVALID_TIME"),
        (
            lambda o: o["line_items"][0]["price_set"]["shop_money"].update(currency_code="EUR"),
            422,
            "MIXED_CURRENCIES",
        ),
        (lambda o: o.update(line_items=[]), 422, "EMPTY_ORDER"),
        (lambda o: (o.pop("email"), o.pop("customer")), 422, "CUSTOMER_REQUIRED"),
        (lambda o: o.pop("id"), 422, "MISSING_FIELD"),
        (lambda o: o["line_items"][0].update(title="tea\x00"), 422, "INVALID_CHARACTER"),
        (lambda o: o.update({"note\x00": "x"}), 422, "INVALID_CHARACTER"),
    ],
)
async def test_bad_payloads_write_nothing(env: Env, change: Any, status: int, reason: str) -> None:
    payload = copy.deepcopy(ORDER)
    change(payload)
    before = await env.event_count()
    got, body = await post(env, "orders/create", payload)
    assert (got, body.get("error")) == (status, reason), body
    assert await env.event_count() == before


async def test_malformed_and_unknown_requests(env: Env) -> None:
    before = await env.event_count()
    status, body = await post(env, "orders/create", None, raw=b"{not json")
    assert (status, body["error"]) == (400, "MALFORMED_JSON")
    status, body = await post(env, "products/create", {"id": 1})
    assert (status, body["error"]) == (400, "UNKNOWN_TOPIC")
    # A refund for an order that has not arrived yet: 409, so the platform retries it later.
    status, body = await post(
        env,
        "refunds/create",
        {
            "id": 7,
            "order_id": 999,
            "transactions": [
                {"kind": "refund", "status": "success", "amount": "1.00", "currency": "USD"}
            ],
        },
    )
    assert (status, body["error"]) == (409, "ORDER_NOT_FOUND")
    assert await env.event_count() == before


async def test_deliveries_are_bound_to_configured_shops(env: Env) -> None:
    before = await env.event_count()
    for shop in (OTHER_SHOP, "", SHOP.upper() + ".evil.com"):
        status, body = await post(env, "orders/create", ORDER, shop=shop)
        assert (status, body["error"]) == (403, "UNKNOWN_SHOP")
    assert await env.event_count() == before
    # The same signed body from a served shop is taken (the domain is matched case-insensitively).
    assert (await post(env, "orders/create", ORDER, shop=SHOP.upper()))[0] == 200


async def test_a_signed_body_resent_under_another_topic_or_shop_changes_nothing(env: Env) -> None:
    status, body = await post(env, "orders/create", ORDER)
    assert status == 200
    order_id = body["order_id"]
    before = await env.event_count()
    for topic, reason in (
        ("orders/cancelled", "PAYLOAD_TOPIC_MISMATCH"),  # no cancelled_at
        ("orders/paid", "PAYLOAD_TOPIC_MISMATCH"),  # financial_status pending
        ("fulfillments/create", "MISSING_FIELD"),  # no order_id
        ("fulfillments/update", "MISSING_FIELD"),
        ("refunds/create", "MISSING_FIELD"),
    ):
        status, body = await post(env, topic, ORDER)
        assert (status, body["error"]) == (422, reason), (topic, body)
    assert (await post(env, "orders/create", ORDER, shop=OTHER_SHOP))[0] == 403
    assert await env.event_count() == before
    o = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=order_id))).order
    assert o.state == pb.ORDER_STATE_PLACED
    # A real cancellation names when it happened.
    cancelled = {**ORDER, "cancelled_at": "2026-11-21T09:00:00+01:00", "cancel_reason": "customer"}
    status, body = await post(env, "orders/cancelled", cancelled)
    assert (status, body["result"]) == (200, "applied")
    status, body = await post(env, "orders/cancelled", {**cancelled, "cancelled_at": "2026-11-21"})
    assert (status, body["error"]) == (422, "INVALID_TIME")


async def test_cash_on_delivery_shipment_before_payment_is_kept_then_applied(env: Env) -> None:
    order = {**ORDER, "id": 2002}
    fulfilment = {**FULFILMENT, "id": 3003, "order_id": 2002}
    status, body = await post(env, "orders/create", order)
    assert status == 200
    order_id = body["order_id"]
    status, body = await post(env, "fulfillments/create", fulfilment)  # shipped, not paid yet
    assert (status, body["result"], body["reasons"]) == (202, "deferred", ["ORDER_PLACED"])
    delivered = {**fulfilment, "shipment_status": "delivered"}
    status, body = await post(env, "fulfillments/update", delivered)
    assert (status, body["result"]) == (202, "deferred")
    # The same fulfilment again with other content: the first kept shipment stands.
    status, body = await post(env, "fulfillments/update", {**delivered, "tracking_number": "X"})
    assert (status, body["result"]) == (202, "deferred")
    count = await env.event_count()
    assert (await post(env, "fulfillments/update", delivered))[0] == 202  # redelivered
    assert await env.event_count() == count  # kept once
    o = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=order_id))).order
    assert (o.state, len(o.shipments)) == (pb.ORDER_STATE_PLACED, 0)

    status, body = await post(env, "orders/paid", {**order, "financial_status": "paid"})
    assert (status, body["result"]) == (200, "applied")
    o = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=order_id))).order
    assert (o.state, o.paid) == (pb.ORDER_STATE_DELIVERED, o.total)
    assert [s.tracking_number for s in o.shipments] == [FULFILMENT["tracking_number"]]
    shipped = [e for e in await env.store.read_stream(f"order-{order_id}") if "Shipped" in e.type]
    assert shipped[0].metadata["request_id"] == f"shopify:{SHOP}:fulfillment:3003"
    assert shipped[0].metadata["actor"] == "webhook:shopify"
    count = await env.event_count()
    for topic, payload in (("fulfillments/create", fulfilment), ("fulfillments/update", delivered)):
        status, body = await post(env, topic, payload)
        assert (status, body["result"]) == (200, "applied"), body
    assert await env.event_count() == count


async def test_refund_before_payment_is_kept_then_applied(env: Env) -> None:
    order = {**ORDER, "id": 4004}
    status, body = await post(env, "orders/create", order)
    order_id = body["order_id"]
    refund = {
        "id": 5005,
        "order_id": 4004,
        "transactions": [
            {"kind": "refund", "status": "success", "amount": "10.00", "currency": "USD"}
        ],
    }
    status, body = await post(env, "refunds/create", refund)
    assert (status, body["reasons"]) == (202, ["NOTHING_PAID"])
    assert (await post(env, "orders/paid", {**order, "financial_status": "paid"}))[0] == 200
    o = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=order_id))).order
    assert (o.state, o.refunded) == (pb.ORDER_STATE_PAID, 1000)


async def test_a_payment_already_recorded_is_already_applied(env: Env) -> None:
    order = {**ORDER, "id": 6006}
    status, body = await post(env, "orders/create", order)
    await env.stub.PayOrder(pb.PayOrderRequest(order_id=body["order_id"]))  # through the API
    count = await env.event_count()
    status, body = await post(env, "orders/paid", {**order, "financial_status": "paid"})
    assert (status, body["result"]) == (200, "already_applied")
    assert await env.event_count() == count
