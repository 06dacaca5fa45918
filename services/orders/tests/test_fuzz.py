"""Every RPC of the orders service, with requests generated from its protobuf descriptor
(shared/testing/fuzz.py), over a real socket against a real PostgreSQL: each answer is OK or an
error its canvas documents (never INTERNAL or UNKNOWN), with one ErrorInfo of domain
orders.crm, and a failed call appends no event."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as pb
from services.orders.tests.conftest import Env
from shared.testing import fuzz

pytestmark = pytest.mark.timeout(300)

DOMAIN = "orders.crm"
CANVAS = fuzz.Canvas.parse(Path(__file__).parents[1] / "README.md")
METHODS = fuzz.methods(pb.DESCRIPTOR.services_by_name["OrdersService"])


@pytest.fixture
async def samples(env: Env) -> fuzz.Samples:
    """Values that get a call past the first checks: ids of a cart and of orders in several
    states, a contact, SKUs and currencies."""
    contact = str(uuid.uuid4())
    line = epb.LineItem(sku="TEA-1", quantity=3, unit_price=1250)
    cart = await env.stub.CreateCart(
        pb.CreateCartRequest(customer=pb.CustomerRef(contact_id=contact), currency="EUR")
    )
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=cart.cart.cart_id, item=line))
    orders = []
    for pay in (False, True):
        placed = await env.stub.PlaceOrder(
            pb.PlaceOrderRequest(
                customer=pb.CustomerRef(contact_id=contact), currency="EUR", items=[line]
            )
        )
        orders.append(placed.order.order_id)
        if pay:
            await env.stub.PayOrder(pb.PayOrderRequest(order_id=placed.order.order_id))
    return {
        "cart_id": [cart.cart.cart_id],
        "order_id": orders,
        "contact_id": [contact],
        "sku": ["TEA-1", "TEA-2"],
        "currency": ["EUR", "JPY", "eur"],
        "email": ["ada@example.com"],
        "phone": ["+14155550123"],
        "external_id": ["shop-42"],
        "carrier": ["DHL"],
        "etag": ["0", "1", "2"],
    }


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@fuzz.SETTINGS
@given(data=st.data())
async def test_every_rpc_answers_as_its_canvas_documents(
    env: Env, samples: fuzz.Samples, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(fuzz.requests(method, samples), label="request")
    await fuzz.assert_answers_as_documented(
        env.stub, method, request, env.event_count, CANVAS, DOMAIN
    )
