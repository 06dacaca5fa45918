"""The cart or the order a message is about: read from orders when the message is decided (and
again when a deferred one is decided later), shown by the template as `cart` / `order` with
money written for the message's locale; it must exist and be the contact's, or nothing is
written. Through the application with orders faked, and over gRPC with orders served."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.orders.v1 import events_pb2 as oepb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from services.notifications.domain import policy
from services.notifications.domain import render as r
from services.notifications.domain.variant import EMAIL, SMS, Variant
from services.notifications.tests.conftest import Env, expect_error
from services.notifications.tests.pipeline_env import ADA, Pipe
from shared.domain.errors import NotFound, Precondition

CART = "7d1e7c36-28a8-4d3f-9f6b-1b8e0c2b9a11"
LINES = "{% for i in cart.items %}{{ i.quantity }} x {{ i.name }}: {{ i.total | money(cart.currency) }}\n{% endfor %}"


def cart(contact_id: str = ADA) -> dict[str, Any]:
    lines = [("TEA-1", "Darjeeling", 2, 650, 0), ("POT-1", "Teapot", 1, 3200, 200)]
    items = [
        {"sku": s, "name": n, "quantity": q, "unit_price": p, "discount": d, "total": q * p - d}
        for s, n, q, p, d in lines
    ]
    return {"cart_id": CART, "contact_id": contact_id, "currency": "EUR", "items": items}


@pytest.mark.parametrize(
    "locale,expected", [("", "€12.50"), ("fr", "12,50\xa0€"), ("de-DE", "12,50\xa0€")]
)
def test_money_is_written_for_the_locale(locale: str, expected: str) -> None:
    assert r.render_part(r.TEXT, "text", "{{ 1250 | money('eur') }}", {}, locale) == expected


def test_money_takes_minor_units_of_a_known_currency() -> None:
    assert r.render_part(r.TEXT, "text", "{{ 1250 | money(c) }}", {"c": "JPY"}) == "¥1,250"
    for source in (
        "{{ 12.5 | money('EUR') }}",
        "{{ 1 | money('XXQ') }}",
        "{{ 'a' | money('EUR') }}",
    ):
        with pytest.raises(r.RenderFailure, match="money"):
            r.render_part(r.TEXT, "text", source, {})


async def _cart_template(pipe: Pipe, channel: str = EMAIL) -> Any:
    if channel == EMAIL:
        variant = Variant("", subject="Your cart", text=LINES)
    else:
        variant = Variant("", body=LINES)
    return await pipe.templates.create(f"cart-{channel[8:].lower()}", channel, "Cart", [variant])


async def test_the_cart_is_read_and_shown(pipe: Pipe) -> None:
    pipe.contacts.add()
    pipe.orders.carts[CART] = cart()
    m = await pipe.send(await _cart_template(pipe), cart_id=CART)
    assert m.last_decision["outcome"] == policy.SEND
    [row] = await pipe.rows("outbox")
    assert row["text"] == "2 x Darjeeling: €13.00\n1 x Teapot: €30.00\n"


async def test_an_unknown_or_someone_elses_cart_writes_nothing(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await _cart_template(pipe)
    with pytest.raises(NotFound) as missing:
        await pipe.send(t, cart_id=CART)
    assert missing.value.reason == "CART_NOT_FOUND"
    pipe.orders.carts[CART] = cart("11111111-2222-4333-8444-555555555555")
    with pytest.raises(Precondition) as other:
        await pipe.send(t, cart_id=CART)
    assert other.value.reason == "CART_NOT_THE_CONTACTS"
    messages = "SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'message-%'"
    assert await pipe.rows("outbox") == [] and await pipe.store.pool.fetchval(messages) == 0


async def test_a_deferred_message_reads_its_cart_again(pipe: Pipe) -> None:
    pipe.contacts.add()
    pipe.orders.carts[CART] = cart()
    pipe.clock.now = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)  # 23:30 in Paris: quiet hours
    m = await pipe.send(await _cart_template(pipe, SMS), kind=policy.TRANSACTIONAL, cart_id=CART)
    assert m.last_decision["outcome"] == policy.DEFER
    [timer] = await pipe.rows("timers")
    assert timer["cart_id"] == CART
    pipe.orders.carts[CART]["items"] = pipe.orders.carts[CART]["items"][:1]  # changed meanwhile
    pipe.clock.now = datetime(2026, 6, 2, 6, 0, tzinfo=UTC)
    assert await pipe.dispatcher.decide_due() == 1
    [row] = await pipe.rows("outbox")
    assert row["body"] == "2 x Darjeeling: €13.00\n"


async def test_an_order_over_grpc_with_orders_served(env: Env) -> None:
    ada = await env.contacts.RegisterContact(
        cpb.RegisterContactRequest(email="ada@example.com", first_name="Ada", locale="fr")
    )
    cid = ada.contact.contact_id
    assert env.orders_served is not None
    orders = opb_grpc.OrdersServiceStub(env.orders_served.channel)
    placed = await orders.PlaceOrder(
        opb.PlaceOrderRequest(
            customer=opb.CustomerRef(contact_id=cid),
            currency="EUR",
            items=[oepb.LineItem(sku="TEA-1", name="Darjeeling", quantity=2, unit_price=650)],
            shipping=490,
        )
    )
    t = await env.stub.CreateTemplate(
        pb.CreateTemplateRequest(
            key="confirmation",
            name="Order confirmation",
            channel=epb.CHANNEL_EMAIL,
            variants=[
                epb.TemplateVariant(
                    subject="Order {{ order.state }}",
                    text="{% for i in order.items %}{{ i.name }}{% endfor %}: "
                    "{{ order.total | money(order.currency) }}",
                )
            ],
        )
    )
    send = pb.SendMessageRequest(
        contact_id=cid,
        template_id=t.template.template_id,
        kind=epb.MESSAGE_KIND_TRANSACTIONAL,
        order_id=placed.order.order_id,
    )
    sent = await env.stub.SendMessage(send)
    assert sent.message.decisions[0].outcome == epb.OUTCOME_SEND
    text = await env.store.pool.fetchval(
        "SELECT text FROM notifications_pipeline.outbox WHERE message_id = $1::uuid",
        sent.message.message_id,
    )
    assert text == "Darjeeling: 17,90\xa0€"  # the contact's locale, fr
    other = await env.contacts.RegisterContact(cpb.RegisterContactRequest(email="bob@example.com"))
    written = await env.written()
    send.contact_id, send.request_id = other.contact.contact_id, "not-bobs"
    await expect_error(
        env.stub.SendMessage(send), grpc.StatusCode.FAILED_PRECONDITION, "ORDER_NOT_THE_CONTACTS"
    )
    send.order_id = "7d1e7c36-0000-4000-8000-000000000000"
    await expect_error(env.stub.SendMessage(send), grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")
    send.order_id = "not-an-id"
    await expect_error(
        env.stub.SendMessage(send), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ORDER_ID"
    )
    assert await env.written() == written
