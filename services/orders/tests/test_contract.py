"""Contract test: a scenario produces every event type the orders service publishes, and each
stored event decodes as its message in protos/crm/orders/v1/events.proto (no unknown fields,
right types), the way a consumer decodes it; times are stored as the JSON mapping writes them."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import json_format, timestamp_pb2

from crm.orders.v1 import events_pb2
from crm.orders.v1 import orders_pb2 as pb
from services.orders.tests.conftest import Env
from services.orders.tests.helpers import IDLE, item, new_cart, timer
from shared.testing import rpc
from shared.testing.events import read_everything

pytestmark = pytest.mark.timeout(120)
TIMESTAMP = timestamp_pb2.Timestamp.DESCRIPTOR


async def test_every_published_event_decodes_as_its_message(env: Env) -> None:
    c = await new_cart(env)
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("A", 2, 500)))
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("B", 1, 500)))
    await env.stub.ChangeCartItem(
        pb.ChangeCartItemRequest(cart_id=c.cart_id, item=item("A", 1, 500))
    )
    await env.stub.RemoveCartItem(pb.RemoveCartItemRequest(cart_id=c.cart_id, sku="B"))
    await env.stub.StartCheckout(pb.StartCheckoutRequest(cart_id=c.cart_id))
    await env.settle()
    await asyncio.sleep(IDLE.total_seconds() + 0.1)
    assert await timer(env).tick() == 1
    o = (
        await env.stub.PlaceOrder(pb.PlaceOrderRequest(cart_id=c.cart_id, shipping=100, tax=50))
    ).order
    await env.stub.PayOrder(pb.PayOrderRequest(order_id=o.order_id, payment_ref="psp"))
    await env.stub.ShipOrder(
        pb.ShipOrderRequest(order_id=o.order_id, carrier="DHL", tracking_number="1")
    )
    await env.stub.DeliverOrder(pb.DeliverOrderRequest(order_id=o.order_id))
    await env.stub.RefundOrder(
        pb.RefundOrderRequest(
            order_id=o.order_id, lines=[events_pb2.RefundLine(sku="A", quantity=1)]
        )
    )
    other = (
        await env.stub.PlaceOrder(
            pb.PlaceOrderRequest(
                customer=pb.CustomerRef(contact_id=c.contact_id), currency="EUR", items=[item()]
            )
        )
    ).order
    await env.stub.CancelOrder(
        pb.CancelOrderRequest(order_id=other.order_id, reason="changed mind")
    )

    seen = set()
    for e in await read_everything(env.store, categories=["cart", "order"]):
        message = rpc.published_message(e, events_pb2)
        written = json_format.MessageToDict(message, preserving_proto_field_name=True)
        assert written  # not empty
        times = [f.name for f in message.DESCRIPTOR.fields if f.message_type == TIMESTAMP]
        for name in times:  # stored as the JSON mapping writes a Timestamp: RFC 3339, UTC
            assert e.data[name] == written[name], (e.type, name)
        seen.add(message.DESCRIPTOR.name)
    published = {m.name for m in events_pb2.DESCRIPTOR.message_types_by_name.values()} - {
        "LineItem",
        "RefundLine",
    }
    assert seen == published
