"""Retries return the first answer (AIP-155), through the real gRPC APIs: many concurrent calls
with one request_id all get the same successful answer, a later retry too, and exactly one set
of events is stored - never an error caused by the request's own first attempt (CART_CONVERTED,
ORDER_PAID, CONTACT_MERGED, NOT_MERGED, IDENTITY_TAKEN)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_status import rpc_status

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as pb
from services.orders.tests.conftest import Env
from shared.grpckit.errors import error_info

pytestmark = pytest.mark.timeout(180)
CALLS = 50


async def same_answer(call: Callable[[], Awaitable[Message]]) -> Message:
    """CALLS concurrent calls, then one more: every one succeeds with the same answer."""
    answers = await asyncio.gather(*(call() for _ in range(CALLS)))
    answers.append(await call())
    first = answers[0].SerializeToString(deterministic=True)
    assert all(a.SerializeToString(deterministic=True) == first for a in answers)
    return answers[0]


async def types_in(env: Env, stream: str) -> list[str]:
    return [e.type.rsplit(".", 1)[-1] for e in await env.store.read_stream(stream)]


def items() -> list[epb.LineItem]:
    return [
        epb.LineItem(sku="TEA-1", name="tea", quantity=2, unit_price=1250),
        epb.LineItem(sku="CUP-1", name="cup", quantity=1, unit_price=900),
    ]


async def test_create_cart(env: Env) -> None:
    """Each attempt decides at its own instant (the cart's create_time): a retry is still the
    same request, told by its fingerprint, and gets the first cart."""
    ref = pb.CustomerRef(contact_id=str(uuid.uuid4()))
    request = pb.CreateCartRequest(customer=ref, currency="EUR", request_id=str(uuid.uuid4()))

    answer: Any = await same_answer(lambda: env.stub.CreateCart(request))

    assert await types_in(env, f"cart-{answer.cart.cart_id}") == ["CartCreated"]


async def test_place_order_from_a_cart(env: Env) -> None:
    ref = pb.CustomerRef(contact_id=str(uuid.uuid4()))
    cart = (await env.stub.CreateCart(pb.CreateCartRequest(customer=ref, currency="EUR"))).cart
    for i in items():
        await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=cart.cart_id, item=i))
    request = pb.PlaceOrderRequest(cart_id=cart.cart_id, request_id=str(uuid.uuid4()))

    answer: Any = await same_answer(lambda: env.stub.PlaceOrder(request))

    assert answer.order.total == 2 * 1250 + 900
    assert await types_in(env, f"order-{answer.order.order_id}") == ["OrderPlaced"]
    cart_events = await types_in(env, f"cart-{cart.cart_id}")
    assert cart_events.count("CartConverted") == 1


async def test_cart_change_with_an_etag(env: Env) -> None:
    ref = pb.CustomerRef(contact_id=str(uuid.uuid4()))
    cart = (await env.stub.CreateCart(pb.CreateCartRequest(customer=ref, currency="EUR"))).cart
    add = pb.AddCartItemRequest(
        cart_id=cart.cart_id, item=items()[0], etag=cart.etag, request_id=str(uuid.uuid4())
    )

    answer: Any = await same_answer(lambda: env.stub.AddCartItem(add))  # never ETAG_MISMATCH

    assert [i.quantity for i in answer.cart.items] == [2]
    assert (await types_in(env, f"cart-{cart.cart_id}")).count("CartItemAdded") == 1


async def test_place_order_from_items_for_a_new_guest(env: Env) -> None:
    email = f"guest-{uuid.uuid4().hex[:8]}@example.com"
    request = pb.PlaceOrderRequest(
        customer=pb.CustomerRef(email=email),
        currency="EUR",
        items=items(),
        request_id=str(uuid.uuid4()),
    )

    answer: Any = await same_answer(lambda: env.stub.PlaceOrder(request))

    assert await types_in(env, f"order-{answer.order.order_id}") == ["OrderPlaced"]
    found = await env.contacts.FindContact(cpb.FindContactRequest(email=email))
    assert found.contact.contact_id == answer.order.contact_id  # one guest, registered once
    assert await types_in(env, f"contact-{answer.order.contact_id}") == ["ContactRegistered"]


async def test_order_lifecycle_commands(env: Env) -> None:
    placed = await env.stub.PlaceOrder(
        pb.PlaceOrderRequest(
            customer=pb.CustomerRef(contact_id=str(uuid.uuid4())), currency="EUR", items=items()
        )
    )
    oid = placed.order.order_id
    pay = pb.PayOrderRequest(order_id=oid, request_id=str(uuid.uuid4()))
    assert (await same_answer(lambda: env.stub.PayOrder(pay))).order.state == pb.ORDER_STATE_PAID  # type: ignore[attr-defined]
    cancel = pb.CancelOrderRequest(order_id=oid, reason="x", request_id=str(uuid.uuid4()))
    cancelled: Any = await same_answer(lambda: env.stub.CancelOrder(cancel))
    assert cancelled.order.state == pb.ORDER_STATE_CANCELLED
    assert await types_in(env, f"order-{oid}") == ["OrderPlaced", "OrderPaid", "OrderCancelled"]


async def test_register_contact(env: Env) -> None:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    request = cpb.RegisterContactRequest(email=email, request_id=str(uuid.uuid4()))

    answer: Any = await same_answer(lambda: env.contacts.RegisterContact(request))

    assert answer.contact.email == email
    assert await types_in(env, f"contact-{answer.contact.contact_id}") == ["ContactRegistered"]


async def test_merge_and_unmerge_contacts(env: Env) -> None:
    async def register(**kw: str) -> str:
        r = await env.contacts.RegisterContact(cpb.RegisterContactRequest(**kw))  # type: ignore[arg-type]
        return str(r.contact.contact_id)

    tag = uuid.uuid4().hex[:8]
    survivor = await register(email=f"s-{tag}@example.com")
    merged = await register(email=f"m-{tag}@example.com", phone="+14155550100")
    merge = cpb.MergeContactsRequest(
        survivor_id=survivor, merged_id=merged, request_id=str(uuid.uuid4())
    )

    answer: Any = await same_answer(lambda: env.contacts.MergeContacts(merge))

    assert answer.survivor.phone == "+14155550100"
    assert await types_in(env, f"contact-{survivor}") == ["ContactRegistered", "ContactAbsorbed"]
    assert await types_in(env, f"contact-{merged}") == ["ContactRegistered", "ContactMerged"]

    unmerge = cpb.UnmergeContactsRequest(merged_id=merged, request_id=str(uuid.uuid4()))
    undone: Any = await same_answer(lambda: env.contacts.UnmergeContacts(unmerge))
    assert (undone.survivor.phone, undone.restored.phone) == ("", "+14155550100")
    assert (await types_in(env, f"contact-{merged}"))[2:] == ["ContactUnmerged"]
    assert (await types_in(env, f"contact-{survivor}"))[2:] == ["ContactAbsorptionReverted"]


async def test_a_request_id_reused_for_a_different_request_is_refused(env: Env) -> None:
    ref = pb.CustomerRef(contact_id=str(uuid.uuid4()))
    rid = str(uuid.uuid4())
    await env.stub.CreateCart(pb.CreateCartRequest(customer=ref, currency="EUR", request_id=rid))
    before = await env.store.head_position()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.stub.CreateCart(
            pb.CreateCartRequest(customer=ref, currency="JPY", request_id=rid)
        )
    assert info.value.code() is grpc.StatusCode.ALREADY_EXISTS
    status = rpc_status.from_call(info.value)
    assert status is not None
    detail = error_info(status)
    assert detail is not None and detail.reason == "REQUEST_ID_REUSED"
    assert detail.domain == "orders.crm"
    assert await env.store.head_position() == before
