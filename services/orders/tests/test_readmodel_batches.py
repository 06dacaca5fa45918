"""The orders and carts read models do not depend on batch boundaries.

Random command sequences go through the service's own OrderCommands and CartCommands (place,
pay, ship, deliver, cancel, refund; create, add, change, remove, checkout, abandon, convert,
recover) into a real store; the stored log is then projected in random batches. Every order and
cart row must equal the domain's fold of its stream (what GetOrder and GetCart answer), and
every customer_metrics row the sums over those folds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.orders.adapters.readmodel import (
    CartsProjection,
    OrdersProjection,
    load_cart,
    load_order,
)
from services.orders.application.aggregates import CART, ORDER
from services.orders.application.commands import CartCommands, OrderCommands, PlaceOrder
from services.orders.domain import cart as carts
from services.orders.domain.order import Order
from shared.domain.errors import DomainError
from shared.testing.batches import batch_sizes, fresh_store, project_in_batches
from shared.testing.postgres import DatabaseFactory

CONTACTS = ("00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b")
CURRENCIES = ("EUR", "JPY")
Plan = list[tuple[str, int, int]]
# Weighted towards the commands that need earlier ones to have succeeded.
CART_OPS = ("create", "checkout", "abandon", "convert", "recover") + ("add", "change", "remove") * 2
ORDER_OPS = ("place", "deliver", "cancel") + ("pay", "ship", "refund") * 2
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def plans(ops: Sequence[str]) -> st.SearchStrategy[Plan]:
    return st.lists(
        st.tuples(st.sampled_from(ops), st.integers(0, 5), st.integers(0, 99)),
        min_size=10,
        max_size=40,
    )


def _item(v: int) -> dict[str, Any]:
    return {"sku": f"S{v % 3}", "quantity": 1 + v % 4, "unit_price": 100 * (1 + v % 5)}


async def _order_step(cmds: OrderCommands, ids: list[str], op: str, i: int, v: int) -> None:
    if op == "place":
        at = datetime.now(UTC) - timedelta(hours=v)
        cmd = PlaceOrder(CONTACTS[v % 2], CURRENCIES[v % 2], [_item(v)], shipping=v, placed_at=at)
        ids.append((await cmds.place(cmd)).order_id)
        return
    if not ids:
        return
    oid = ids[i % len(ids)]
    if op == "pay":
        await cmds.pay(oid, 0, f"p{v}")
    elif op == "ship":
        await cmds.ship(oid, f"s{v % 3}", "DHL", f"T{v}", "")
    elif op == "deliver":
        await cmds.deliver(oid)
    elif op == "cancel":
        await cmds.cancel(oid, "test")
    elif op == "refund":  # by amount, or by a returned line
        lines = [{"sku": _item(v)["sku"], "quantity": 1}] if v % 2 else []
        await cmds.refund(oid, 0 if lines else 1 + v, lines, "", f"r{v % 4}")


async def _cart_step(
    cmds: CartCommands, orders: OrderCommands, ids: list[str], op: str, i: int, v: int
) -> None:
    if op == "create":
        ids.append((await cmds.create(CONTACTS[v % 2], CURRENCIES[v % 2])).cart_id)
        return
    if not ids:
        return
    cid = ids[i % len(ids)]
    if op == "add":
        await cmds.add(cid, _item(v))
    elif op == "change":
        await cmds.change(cid, {**_item(v), "quantity": 1 + v % 7})
    elif op == "remove":
        await cmds.remove(cid, _item(v)["sku"])
    elif op == "checkout":
        await cmds.checkout(cid)
    elif op == "abandon":  # as the timer would, once the cart is idle long enough
        await cmds.abandon(cid, datetime.now(UTC) + timedelta(days=1), timedelta(hours=1))
    elif op == "convert":
        await orders.place(PlaceOrder("", "", [], cart_id=cid))
    elif op == "recover":
        oid = "00000000-0000-4000-8000-0000000000f0"
        await orders.runner.execute(CART, cid, lambda c: carts.decide_recover(c, oid))


def _expected_metrics(folded: Sequence[Order]) -> dict[tuple[str, str], tuple[Any, ...]]:
    out: dict[tuple[str, str], list[Order]] = {}
    for o in folded:
        if o.state != "CANCELLED":
            out.setdefault((o.contact_id, o.currency), []).append(o)
    return {
        key: (
            len(os),
            sum(o.total - o.refunded for o in os),
            sum(o.refunded for o in os),
            min(o.placed_at for o in os),
            max(o.placed_at for o in os),
        )
        for key, os in out.items()
    }


async def _run(plan: Plan, step: Any, ids: list[str]) -> None:
    """Execute the plan; what the domain refuses is skipped, as a client would see it refused."""
    for op, i, v in plan:
        with contextlib.suppress(DomainError):
            await step(ids, op, i, v)


@SETTINGS
@given(plan=plans(ORDER_OPS), sizes=batch_sizes)
async def test_orders_rows_and_metrics_equal_the_fold_whatever_the_batches(
    databases: DatabaseFactory, plan: Plan, sizes: list[int]
) -> None:
    async with fresh_store(databases) as store:
        cmds, ids = OrderCommands(store), list[str]()
        await _run(plan, lambda *a: _order_step(cmds, *a), ids)
        await project_in_batches(store, OrdersProjection(), sizes)
        folded = [await cmds.runner.get(ORDER, oid) for oid in ids]  # what GetOrder answers
        rows = await store.pool.fetch(
            """SELECT order_id::text, contact_id::text, currency, state, total, refunded,
                      placed_at, version, doc::text FROM orders_rm.orders"""
        )
        got = {r[0]: r for r in rows}
        assert len(got) == len(folded)
        for o in folded:
            r = got[o.order_id]
            assert load_order(orjson.loads(r["doc"])) == o
            assert tuple(r)[1:8] == (
                o.contact_id,
                o.currency,
                o.state,
                o.total,
                o.refunded,
                o.placed_at,
                o.version,
            )
        metrics = await store.pool.fetch(
            """SELECT contact_id::text, currency, order_count, revenue, refunded, first_order_at,
                      last_order_at FROM orders_rm.customer_metrics"""
        )
        assert {(r[0], r[1]): tuple(r)[2:] for r in metrics} == _expected_metrics(folded)


@SETTINGS
@given(plan=plans(CART_OPS), sizes=batch_sizes)
async def test_carts_rows_equal_the_fold_whatever_the_batches(
    databases: DatabaseFactory, plan: Plan, sizes: list[int]
) -> None:
    async with fresh_store(databases) as store:
        cmds, orders, ids = CartCommands(store), OrderCommands(store), list[str]()
        await _run(plan, lambda *a: _cart_step(cmds, orders, *a), ids)
        await project_in_batches(store, CartsProjection(), sizes)
        rows = await store.pool.fetch(
            """SELECT cart_id::text, contact_id::text, state, item_count, last_activity_at,
                      abandoned, recovered, abandoned_at, version, doc::text FROM carts_rm.carts"""
        )
        got = {r[0]: r for r in rows}
        assert len(got) == len(ids)
        for cid in ids:
            c, r = await cmds.runner.get(CART, cid), got[cid]  # what GetCart answers
            assert load_cart(orjson.loads(r["doc"])) == c
            assert tuple(r)[1:9] == (
                c.contact_id,
                c.state,
                len(c.items),
                c.last_activity_at,
                c.abandoned_at is not None,
                c.recovered,
                c.abandoned_at,
                c.version,
            )
