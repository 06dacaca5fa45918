"""The order lifecycle over real gRPC against a real PostgreSQL: every transition, legal and
illegal, partial refunds, bad input that writes nothing, guest contacts, idempotent retries."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as pb
from services.orders.tests.conftest import Env
from services.orders.tests.helpers import expect_error, item
from shared.grpckit.errors import error_info, field_violations

pytestmark = pytest.mark.timeout(120)

S = pb.OrderState


async def place(env: Env, contact_id: str | None = None, **kw: object) -> pb.Order:
    kw.setdefault("items", [item(), item("SKU-2", 1, 999, 100)])
    kw.setdefault("currency", "EUR")
    contact = pb.CustomerRef(contact_id=contact_id or str(uuid.uuid4()))
    r = await env.stub.PlaceOrder(pb.PlaceOrderRequest(customer=contact, **kw))  # type: ignore[arg-type]
    return r.order


async def test_place_computes_totals_and_get_reads_the_stream(env: Env) -> None:
    o = await place(env, shipping=495, tax=300)
    assert o.subtotal == 2 * 1250 + 999 - 100
    assert o.total == o.subtotal + 495 + 300
    assert (o.state, o.paid, o.refunded, o.etag) == (S.ORDER_STATE_PLACED, 0, 0, "0")
    got = (await env.stub.GetOrder(pb.GetOrderRequest(order_id=o.order_id))).order
    assert got == o


# Each action from each state: the state the order is driven to first, then the action.
PATHS: dict[str, list[str]] = {
    "PLACED": [],
    "PAID": ["pay"],
    "SHIPPED": ["pay", "ship"],
    "DELIVERED": ["pay", "ship", "deliver"],
    "CANCELLED": ["cancel"],
    "PAID_CANCELLED": ["pay", "cancel"],
    "REFUNDED": ["pay", "refund_all"],
}
LEGAL = {
    "pay": {"PLACED"},
    "ship": {"PAID", "SHIPPED"},
    "deliver": {"SHIPPED"},
    "cancel": {"PLACED", "PAID"},
    "refund_part": {"PAID", "SHIPPED", "DELIVERED", "PAID_CANCELLED"},
}
AFTER = {"pay": "PAID", "ship": "SHIPPED", "deliver": "DELIVERED", "cancel": "CANCELLED"}


def action(env: Env, name: str, order: pb.Order) -> Awaitable[object]:
    oid = order.order_id
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "pay": lambda: env.stub.PayOrder(pb.PayOrderRequest(order_id=oid, payment_ref="psp-1")),
        "ship": lambda: env.stub.ShipOrder(
            pb.ShipOrderRequest(
                order_id=oid, carrier="DHL", tracking_number=f"JD{uuid.uuid4().hex[:8]}"
            )
        ),
        "deliver": lambda: env.stub.DeliverOrder(pb.DeliverOrderRequest(order_id=oid)),
        "cancel": lambda: env.stub.CancelOrder(
            pb.CancelOrderRequest(order_id=oid, reason="customer")
        ),
        "refund_part": lambda: env.stub.RefundOrder(
            pb.RefundOrderRequest(order_id=oid, amount=100)
        ),
        "refund_all": lambda: env.stub.RefundOrder(
            pb.RefundOrderRequest(order_id=oid, amount=order.total)
        ),
    }
    return calls[name]()


@pytest.mark.parametrize("start", list(PATHS))
async def test_every_transition_legal_and_illegal(env: Env, start: str) -> None:
    for name in ("pay", "ship", "deliver", "cancel", "refund_part"):
        order = await place(env)
        for step in PATHS[start]:
            await action(env, step, order)
        before = await env.event_count()
        state_name = start.removeprefix("PAID_")
        if start in LEGAL[name]:
            r = await action(env, name, order)
            after = r.order  # type: ignore[attr-defined]
            expected = AFTER.get(name, state_name)
            assert pb.OrderState.Name(after.state) == f"ORDER_STATE_{expected}", (start, name)
            assert await env.event_count() == before + 1
        else:
            reason = (
                "NOTHING_PAID"
                if name == "refund_part" and start in ("PLACED", "CANCELLED")
                else f"ORDER_{state_name}"
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await action(env, name, order)
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (start, name)
            status = rpc_status.from_call(info.value)
            assert status is not None
            detail = error_info(status)
            assert detail is not None and detail.reason == reason, (start, name, detail)
            if reason.startswith("ORDER_"):
                assert detail.metadata["state"] == state_name  # names the current state
                assert state_name in (info.value.details() or "")
            assert await env.event_count() == before  # nothing written


async def test_shipments_carry_carrier_and_tracking_and_repeat_ids_are_noops(env: Env) -> None:
    o = await place(env)
    await env.stub.PayOrder(pb.PayOrderRequest(order_id=o.order_id))
    req = pb.ShipOrderRequest(
        order_id=o.order_id,
        carrier="UPS",
        tracking_number="1Z999",
        tracking_url="https://ups.example/1Z999",
        shipment_id="box-1",
    )
    first = (await env.stub.ShipOrder(req)).order
    again = (await env.stub.ShipOrder(req)).order
    assert [(s.shipment_id, s.carrier, s.tracking_number) for s in again.shipments] == [
        ("box-1", "UPS", "1Z999")
    ]
    assert again.etag == first.etag
    second = (
        await env.stub.ShipOrder(
            pb.ShipOrderRequest(order_id=o.order_id, carrier="UPS", shipment_id="box-2")
        )
    ).order
    assert len(second.shipments) == 2
    await expect_error(
        env.stub.ShipOrder(pb.ShipOrderRequest(order_id=o.order_id)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CARRIER_REQUIRED",
    )


async def test_partial_refunds_never_exceed_paid(env: Env) -> None:
    o = await place(env, shipping=500)
    await env.stub.PayOrder(pb.PayOrderRequest(order_id=o.order_id, amount=o.total))
    r1 = (
        await env.stub.RefundOrder(
            pb.RefundOrderRequest(
                order_id=o.order_id, lines=[epb.RefundLine(sku="SKU-1", quantity=1)]
            )
        )
    ).order
    assert r1.refunded == 1250 and r1.state == S.ORDER_STATE_PAID  # one of two units, pro rata
    r2 = (
        await env.stub.RefundOrder(
            pb.RefundOrderRequest(order_id=o.order_id, amount=1000, reason="late")
        )
    ).order
    assert r2.refunded == 2250
    left = o.total - 2250
    before = await env.event_count()
    await expect_error(
        env.stub.RefundOrder(pb.RefundOrderRequest(order_id=o.order_id, amount=left + 1)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REFUND_EXCEEDS_PAID",
    )
    # The remaining unit of SKU-1 can be returned once; a second unit is not there.
    await expect_error(
        env.stub.RefundOrder(
            pb.RefundOrderRequest(
                order_id=o.order_id, lines=[epb.RefundLine(sku="SKU-1", quantity=2)]
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_QUANTITY",
    )
    await expect_error(
        env.stub.RefundOrder(
            pb.RefundOrderRequest(
                order_id=o.order_id, lines=[epb.RefundLine(sku="NOPE", quantity=1)]
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_SKU",
    )
    assert await env.event_count() == before
    full = (
        await env.stub.RefundOrder(pb.RefundOrderRequest(order_id=o.order_id, amount=left))
    ).order
    assert (full.refunded, full.state) == (o.total, S.ORDER_STATE_REFUNDED)
    await expect_error(
        env.stub.RefundOrder(pb.RefundOrderRequest(order_id=o.order_id, amount=1)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ORDER_REFUNDED",
    )


async def test_pay_amount_must_match_total(env: Env) -> None:
    o = await place(env)
    await expect_error(
        env.stub.PayOrder(pb.PayOrderRequest(order_id=o.order_id, amount=o.total - 1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "PAYMENT_AMOUNT_MISMATCH",
    )
    await expect_error(
        env.stub.PayOrder(pb.PayOrderRequest(order_id=o.order_id, amount=-5)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "NEGATIVE_AMOUNT",
    )


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"items": [item(unit_price=-1)]}, "NEGATIVE_AMOUNT"),
        ({"items": [item(quantity=0)]}, "INVALID_QUANTITY"),
        ({"items": [item(quantity=-2)]}, "INVALID_QUANTITY"),
        ({"items": [item(discount=99999)]}, "INVALID_DISCOUNT"),
        ({"items": []}, "EMPTY_ORDER"),
        ({"currency": "XYZ"}, "UNKNOWN_CURRENCY"),
        ({"currency": ""}, "UNKNOWN_CURRENCY"),
        ({"items": [item(currency="EUR"), item("SKU-2", currency="USD")]}, "MIXED_CURRENCIES"),
        ({"items": [item(), item()]}, "DUPLICATE_SKU"),
        ({"items": [item(sku="")]}, "INVALID_SKU"),
        ({"shipping": -1}, "NEGATIVE_AMOUNT"),
        ({"order_id": "not-a-uuid"}, "INVALID_ORDER_ID"),
        ({"place_time": Timestamp(seconds=10**13)}, "INVALID_PLACE_TIME"),
    ],
)
async def test_bad_orders_are_refused_and_write_nothing(
    env: Env, kw: dict[str, Any], reason: str
) -> None:
    before = await env.event_count()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await place(env, **kw)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    detail = error_info(status)
    assert detail is not None and detail.reason == reason, detail
    assert field_violations(status)  # names the offending field
    assert await env.event_count() == before


async def test_unknown_order_is_not_found(env: Env) -> None:
    await expect_error(
        env.stub.GetOrder(pb.GetOrderRequest(order_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    await expect_error(
        env.stub.PayOrder(pb.PayOrderRequest(order_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )


async def test_request_id_makes_retries_exactly_once(env: Env) -> None:
    contact = str(uuid.uuid4())
    a = await place(env, contact, request_id="checkout-42")
    b = await place(env, contact, request_id="checkout-42")
    assert a == b
    p1 = (
        await env.stub.PayOrder(pb.PayOrderRequest(order_id=a.order_id, request_id="pay-42"))
    ).order
    p2 = (
        await env.stub.PayOrder(pb.PayOrderRequest(order_id=a.order_id, request_id="pay-42"))
    ).order
    assert p1 == p2 and p1.state == S.ORDER_STATE_PAID
    assert await env.event_count() == 2
    # A client-chosen order id that exists already, under another request: ALREADY_EXISTS.
    await expect_error(
        place(env, contact, order_id=a.order_id, request_id="other"),
        grpc.StatusCode.ALREADY_EXISTS,
        "ORDER_EXISTS",
    )


async def test_guest_contact_is_created_through_the_contacts_service(env: Env) -> None:
    ref = pb.CustomerRef(email="Guest.Buyer@Example.org")
    o = (
        await env.stub.PlaceOrder(
            pb.PlaceOrderRequest(customer=ref, currency="USD", items=[item()])
        )
    ).order
    found = (await env.contacts.GetContact(cpb.GetContactRequest(contact_id=o.contact_id))).contact
    assert found.email == "guest.buyer@example.org" and "guest" in found.tags
    # The same customer again (different spelling) is the same contact, not a second guest.
    again = (
        await env.stub.PlaceOrder(
            pb.PlaceOrderRequest(
                customer=pb.CustomerRef(email="guest.buyer@example.org"),
                currency="USD",
                items=[item()],
            )
        )
    ).order
    assert again.contact_id == o.contact_id
    # An existing contact is found, not duplicated.
    known = (
        await env.contacts.RegisterContact(cpb.RegisterContactRequest(phone="+14155552671"))
    ).contact
    by_phone = (
        await env.stub.PlaceOrder(
            pb.PlaceOrderRequest(
                customer=pb.CustomerRef(phone="+1 415 555 2671"), currency="USD", items=[item()]
            )
        )
    ).order
    assert by_phone.contact_id == known.contact_id
    before = await env.event_count()
    # Bad input from a new customer leaves no guest contact behind.
    await expect_error(
        env.stub.PlaceOrder(
            pb.PlaceOrderRequest(
                customer=pb.CustomerRef(email="new.person@example.org"),
                currency="XYZ",
                items=[item()],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_CURRENCY",
    )
    await expect_error(
        env.stub.PlaceOrder(
            pb.PlaceOrderRequest(
                customer=pb.CustomerRef(email="not-an-email"), currency="USD", items=[item()]
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_EMAIL",
    )
    await expect_error(
        env.stub.PlaceOrder(pb.PlaceOrderRequest(currency="USD", items=[item()])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CUSTOMER_REQUIRED",
    )
    assert await env.event_count() == before


async def test_list_orders_by_contact_and_state_paged(env: Env) -> None:
    contact = str(uuid.uuid4())
    made = [await place(env, contact) for _ in range(5)]
    other = await place(env)
    await env.stub.PayOrder(pb.PayOrderRequest(order_id=made[1].order_id))
    await env.stub.PayOrder(pb.PayOrderRequest(order_id=other.order_id))
    await env.settle()
    seen, token = [], ""
    while True:
        r = await env.stub.ListOrders(
            pb.ListOrdersRequest(contact_id=contact, page_size=2, page_token=token)
        )
        seen += [o.order_id for o in r.orders]
        token = r.next_page_token
        if not token:
            break
    assert seen == [o.order_id for o in reversed(made)]  # newest first, every order once
    paid = await env.stub.ListOrders(
        pb.ListOrdersRequest(contact_id=contact, state=S.ORDER_STATE_PAID)
    )
    assert [o.order_id for o in paid.orders] == [made[1].order_id]
    assert paid.orders[0].state == S.ORDER_STATE_PAID and paid.orders[0].paid == made[1].total
    everyone_paid = await env.stub.ListOrders(pb.ListOrdersRequest(state=S.ORDER_STATE_PAID))
    assert {o.order_id for o in everyone_paid.orders} == {made[1].order_id, other.order_id}
    r = await env.stub.ListOrders(pb.ListOrdersRequest(contact_id=contact, page_size=2))
    await expect_error(
        env.stub.ListOrders(pb.ListOrdersRequest(page_size=2, page_token=r.next_page_token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    # Made-up and edited tokens: the payload is signed, so none reaches the query.
    body, _, mac = r.next_page_token.partition(".")
    forged = base64.urlsafe_b64encode(b'{"a":["2020-01-01",1],"f":"|"}').decode()
    for token in ("%%%", "bm90IGpzb24", forged, f"{forged}.{mac}", f"{body}.{mac[:-2]}AA", body):
        await expect_error(
            env.stub.ListOrders(
                pb.ListOrdersRequest(contact_id=contact, page_size=2, page_token=token)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )
    await expect_error(
        env.stub.ListOrders(pb.ListOrdersRequest(state=99)),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STATE",
    )
