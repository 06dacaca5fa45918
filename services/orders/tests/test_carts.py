"""Carts over gRPC, and the abandoned-cart timer against the real database: it fires once,
across a restart and with two timers racing, and a later order recovers the cart."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import pytest

from crm.orders.v1 import orders_pb2 as pb
from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from services.orders.tests.conftest import Env
from services.orders.tests.helpers import IDLE, expect_error, item, new_cart, timer
from shared.projections.model import ApplyContext
from shared.testing.events import read_everything

pytestmark = pytest.mark.timeout(120)
CS = pb.CartState


async def test_cart_items_add_change_remove_checkout(env: Env) -> None:
    c = await new_cart(env)
    assert (c.state, c.etag, list(c.items)) == (CS.CART_STATE_OPEN, "0", [])
    c = (
        await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("A", 1, 500)))
    ).cart
    c = (
        await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("A", 2, 500)))
    ).cart
    c = (
        await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("B", 1, 300)))
    ).cart
    assert [(i.sku, i.quantity) for i in c.items] == [("A", 3), ("B", 1)] and c.subtotal == 1800
    c = (
        await env.stub.ChangeCartItem(
            pb.ChangeCartItemRequest(cart_id=c.cart_id, item=item("A", 1, 450), etag=c.etag)
        )
    ).cart
    assert c.subtotal == 750
    await expect_error(
        env.stub.ChangeCartItem(
            pb.ChangeCartItemRequest(cart_id=c.cart_id, item=item("A", 2, 450), etag="1")
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await expect_error(
        env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("A", 1, 999))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "PRICE_MISMATCH",
    )
    await expect_error(
        env.stub.AddCartItem(
            pb.AddCartItemRequest(cart_id=c.cart_id, item=item("C", 1, 100, currency="USD"))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "MIXED_CURRENCIES",
    )
    c = (await env.stub.RemoveCartItem(pb.RemoveCartItemRequest(cart_id=c.cart_id, sku="B"))).cart
    await expect_error(
        env.stub.RemoveCartItem(pb.RemoveCartItemRequest(cart_id=c.cart_id, sku="B")),
        grpc.StatusCode.NOT_FOUND,
        "CART_ITEM_NOT_FOUND",
    )
    c = (await env.stub.StartCheckout(pb.StartCheckoutRequest(cart_id=c.cart_id))).cart
    assert c.state == CS.CART_STATE_CHECKOUT
    got = (await env.stub.GetCart(pb.GetCartRequest(cart_id=c.cart_id))).cart
    assert got == c


async def test_empty_cart_cannot_check_out_or_become_an_order(env: Env) -> None:
    c = await new_cart(env)
    before = await env.event_count()
    await expect_error(
        env.stub.StartCheckout(pb.StartCheckoutRequest(cart_id=c.cart_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CART_EMPTY",
    )
    await expect_error(
        env.stub.PlaceOrder(pb.PlaceOrderRequest(cart_id=c.cart_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CART_EMPTY",
    )
    await expect_error(
        env.stub.CreateCart(
            pb.CreateCartRequest(
                customer=pb.CustomerRef(contact_id=str(uuid.uuid4())), currency="EURO"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_CURRENCY",
    )
    await expect_error(  # a new customer with a bad currency: no guest contact either
        env.stub.CreateCart(
            pb.CreateCartRequest(
                customer=pb.CustomerRef(email="someone.new@example.org"), currency="EURO"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_CURRENCY",
    )
    await expect_error(
        env.stub.GetCart(pb.GetCartRequest(cart_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
        "CART_NOT_FOUND",
    )
    assert await env.event_count() == before


async def test_cart_becomes_an_order_once(env: Env) -> None:
    c = await new_cart(env)
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("A", 2, 500)))
    o = (await env.stub.PlaceOrder(pb.PlaceOrderRequest(cart_id=c.cart_id, shipping=100))).order
    assert (o.contact_id, o.cart_id, o.total, o.currency) == (c.contact_id, c.cart_id, 1100, "EUR")
    after = (await env.stub.GetCart(pb.GetCartRequest(cart_id=c.cart_id))).cart
    assert (after.state, after.order_id) == (CS.CART_STATE_CONVERTED, o.order_id)
    await expect_error(
        env.stub.PlaceOrder(pb.PlaceOrderRequest(cart_id=c.cart_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CART_CONVERTED",
    )
    await expect_error(
        env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("B"))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CART_CONVERTED",
    )
    await expect_error(
        env.stub.PlaceOrder(pb.PlaceOrderRequest(cart_id=c.cart_id, currency="USD")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "MIXED_CURRENCIES",
    )


async def abandoned_events(env: Env, cart_id: str) -> list[str]:
    events = await env.store.read_stream(carts.stream_of(cart_id))
    return [e.type for e in events if e.type == carts.ABANDONED]


async def test_abandonment_fires_once_across_a_restart(env: Env) -> None:
    idle = await new_cart(env)
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=idle.cart_id, item=item("A", 1, 500)))
    empty = await new_cart(env)  # no items: never abandoned
    await env.settle()
    first = timer(env, timedelta(hours=1))
    assert await first.tick() == 0  # not idle long enough yet
    await asyncio.sleep(IDLE.total_seconds() + 0.1)
    # Restart: the first timer is gone; a new one (new process, same database) takes over.
    second = timer(env)
    assert await second.tick() == 1
    assert await second.tick() == 0
    await env.settle()
    assert await timer(env).tick() == 0
    assert await abandoned_events(env, idle.cart_id) == [carts.ABANDONED]
    assert await abandoned_events(env, empty.cart_id) == []
    cart = (await env.stub.GetCart(pb.GetCartRequest(cart_id=idle.cart_id))).cart
    assert cart.state == CS.CART_STATE_ABANDONED
    # Activity after abandonment reopens the cart for editing, but never abandons it again.
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=idle.cart_id, item=item("B", 1, 100)))
    await asyncio.sleep(IDLE.total_seconds() + 0.1)
    await env.settle()
    assert await timer(env).tick() == 0
    assert await abandoned_events(env, idle.cart_id) == [carts.ABANDONED]


async def test_two_timers_racing_abandon_each_cart_once(env: Env) -> None:
    ids = []
    for _ in range(20):
        c = await new_cart(env)
        await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("A", 1, 500)))
        ids.append(c.cart_id)
    await env.settle()
    await asyncio.sleep(IDLE.total_seconds() + 0.1)
    a, b = timer(env), timer(env)
    fired = await asyncio.gather(a.tick(), b.tick(), a.tick(), b.tick())
    assert sum(fired) == 20
    for cart_id in ids:
        assert await abandoned_events(env, cart_id) == [carts.ABANDONED]
    # The timers' run loops, stopped and started again, find nothing more to do.
    stop = asyncio.Event()
    loops = [asyncio.create_task(timer(env).run(stop)) for _ in range(2)]
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*loops)
    assert len([e for e in await read_everything(env.store) if e.type == carts.ABANDONED]) == 20


async def test_abandoned_cart_is_recovered_by_converting_it(env: Env) -> None:
    c = await new_cart(env)
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("A", 1, 500)))
    await env.settle()
    await asyncio.sleep(IDLE.total_seconds() + 0.1)
    assert await timer(env).tick() == 1
    o = (await env.stub.PlaceOrder(pb.PlaceOrderRequest(cart_id=c.cart_id))).order
    events = await env.store.read_stream(carts.stream_of(c.cart_id))
    recovered = [e for e in events if e.type == carts.RECOVERED]
    assert [e.data["how"] for e in recovered] == ["converted"]
    assert recovered[0].data["order_id"] == o.order_id


async def test_a_later_order_by_the_contact_recovers_the_abandoned_cart(env: Env) -> None:
    contact = str(uuid.uuid4())
    c = await new_cart(env, contact)
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=c.cart_id, item=item("A", 1, 500)))
    fresh = await new_cart(env, contact)  # not abandoned: not recovered
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=fresh.cart_id, item=item("B")))
    await env.settle()
    await asyncio.sleep(IDLE.total_seconds() + 0.1)
    await env.stub.AddCartItem(pb.AddCartItemRequest(cart_id=fresh.cart_id, item=item("B")))
    assert await timer(env).tick() == 1
    await env.settle()

    async def order() -> pb.Order:
        req = pb.PlaceOrderRequest(
            customer=pb.CustomerRef(contact_id=contact), currency="EUR", items=[item("A", 1, 500)]
        )
        return (await env.stub.PlaceOrder(req)).order

    async def recovered(cart_id: str) -> list[tuple[str, str]]:
        events = await env.store.read_stream(carts.stream_of(cart_id))
        return [(e.data["how"], e.data["order_id"]) for e in events if e.type == carts.RECOVERED]

    o = await order()
    await env.settle()  # the recovery reactor has seen the order
    assert await recovered(c.cart_id) == [("ordered", o.order_id)]
    # Caused by the order's event, in the order's correlation.
    [placed_event] = await env.store.read_stream(f"order-{o.order_id}")
    [recovery] = [
        e
        for e in await env.store.read_stream(carts.stream_of(c.cart_id))
        if e.type == carts.RECOVERED
    ]
    assert recovery.metadata["causation_id"] == str(placed_event.event_id)
    assert recovery.metadata["correlation_id"] == placed_event.metadata["correlation_id"] != ""
    assert recovery.metadata["actor"] == "cart-recovery"
    assert await recovered(fresh.cart_id) == []
    # Recovered once: another order does not recover it again, nor does a re-run.
    await order()
    await env.settle()
    assert len(await recovered(c.cart_id)) == 1
    reactor = env.runners[2].projection
    placed = [e for e in await read_everything(env.store, types=[orders.PLACED])]
    async with env.store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL search_path TO cart_recovery")
        await reactor.apply(conn, placed, ApplyContext(replay=False))
    assert len(await recovered(c.cart_id)) == 1
