"""Helpers the orders tests share (their fixtures are in conftest.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import grpc

from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as pb
from services.orders.application.abandonment import AbandonmentTimer
from services.orders.application.commands import CartCommands
from services.orders.application.queries import OrderQueries
from services.orders.tests.conftest import Env
from shared.testing import rpc

IDLE = timedelta(seconds=1)  # long enough that a loaded CI box never abandons early


async def expect_error(call: Any, code: grpc.StatusCode, reason: str) -> list[str]:
    return await rpc.expect_error(call, code, reason, "orders.crm")


def item(
    sku: str = "SKU-1", quantity: int = 2, unit_price: int = 1250, discount: int = 0, **kw: object
) -> epb.LineItem:
    return epb.LineItem(
        sku=sku,
        name=f"thing {sku}",
        quantity=quantity,
        unit_price=unit_price,
        discount=discount,
        **kw,  # type: ignore[arg-type]
    )


async def new_cart(env: Env, contact: str | None = None) -> pb.Cart:
    ref = pb.CustomerRef(contact_id=contact or str(uuid.uuid4()))
    return (await env.stub.CreateCart(pb.CreateCartRequest(customer=ref, currency="EUR"))).cart


def timer(env: Env, after: timedelta = IDLE) -> AbandonmentTimer:
    """An abandonment timer on ``env`` (a new one is what a restarted process has)."""
    return AbandonmentTimer(OrderQueries(env.store.pool), CartCommands(env.store), after, 0.05)
