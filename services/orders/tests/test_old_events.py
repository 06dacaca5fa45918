"""An old log still reads the same. Orders events stored before their times became Timestamp
fields (``created_at``, ``last_activity_at``, ``placed_at``: ISO 8601 strings) are written here
literally, as they were stored, and read back through every reader: the command side, the read
models and the recovery reactor (through the projection runner), and the published-event
decoder. Each must give exactly what the same events give in the current shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm.orders.v1 import events_pb2
from services.orders.adapters.readmodel import CartsProjection, OrdersProjection
from services.orders.application.aggregates import CART, ORDER
from services.orders.application.commands import OrderCommands
from services.orders.application.recovery import CartRecovery
from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from shared.application.commands import CommandRunner
from shared.events.envelope import decode
from shared.eventstore import EventStore, NewEvent, RecordedEvent, StreamState
from shared.eventstore.memory import InMemoryEventStore
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import Projection
from shared.projections.reactor import Reactor
from shared.projections.runner import ProjectionRunner, ensure_schema
from shared.testing import rpc

CONTACT = "5b0c3f52-8d1e-4a8b-9a59-0f4c2e7d1a10"
CART_ID = "0d7c6e44-2f0b-4b63-8d0e-3b9f1c2a5e01"
ORDER_ID = "9a4e1b7c-6d2f-4e58-b0a3-7c1d5e9f2b02"
TEA = {"sku": "TEA-1", "name": "tea", "quantity": 2, "unit_price": 1250, "discount": 0}
CART_BASE = {"cart_id": CART_ID, "contact_id": CONTACT, "currency": "EUR"}
ORDER_BASE = {"order_id": ORDER_ID, "contact_id": CONTACT, "currency": "EUR"}

# (type, data as stored before the change, data as stored now) for each event, in stream order.
CART_LOG: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        carts.CREATED,
        {**CART_BASE, "created_at": "2026-11-20T09:00:00.123456+00:00"},
        {**CART_BASE, "create_time": "2026-11-20T09:00:00.123456Z"},
    ),
    (carts.ITEM_ADDED, {"cart_id": CART_ID, "item": TEA}, {"cart_id": CART_ID, "item": TEA}),
    (
        carts.ABANDONED,
        {
            **CART_BASE,
            "subtotal": 2500,
            "items": [TEA],
            "last_activity_at": "2026-11-20T09:00:01.500000+00:00",
            "abandon_after_seconds": 3600,
        },
        {
            **CART_BASE,
            "subtotal": 2500,
            "items": [TEA],
            "last_activity_time": "2026-11-20T09:00:01.500Z",
            "abandon_after_seconds": 3600,
        },
    ),
]
PLACED = {
    **ORDER_BASE,
    "items": [TEA],
    "subtotal": 2500,
    "shipping": 0,
    "tax": 0,
    "total": 2500,
    "external_ref": "shopify:dev-shop.myshopify.com:450789469",
    "cart_id": "",
    "source": "shopify",
}
PAID = {**ORDER_BASE, "amount": 2500, "payment_ref": "shopify:450789469"}
ORDER_LOG: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        orders.PLACED,
        {**PLACED, "placed_at": "2026-11-20T15:15:00+00:00"},
        {**PLACED, "place_time": "2026-11-20T15:15:00Z"},
    ),
    (orders.PAID, PAID, PAID),
]
LOGS = {carts.stream_of(CART_ID): CART_LOG, orders.stream_of(ORDER_ID): ORDER_LOG}


async def write_old_log(store: EventStore) -> None:
    for stream, log in LOGS.items():
        events = [NewEvent(t, dict(old)) for t, old, _ in log]
        await store.append(stream, events, StreamState.NO_STREAM)


async def stored_and_current(store: EventStore, stream: str) -> list[tuple[RecordedEvent, ...]]:
    """Each stored event with its twin: the same event with its data in the current shape."""
    stored = await store.read_stream(stream)
    assert [e.data for e in stored] == [old for _, old, _ in LOGS[stream]]  # never rewritten
    return [(e, e._replace(data=new)) for e, (_, _, new) in zip(stored, LOGS[stream], strict=True)]


def rows(events: list[RecordedEvent]) -> list[tuple[str, Any, datetime, int]]:
    return [(e.type, e.data, e.recorded_at, e.version) for e in events]


async def check_command_side(store: EventStore) -> None:
    await write_old_log(store)
    agg = CommandRunner(store)
    order_twins = await stored_and_current(store, orders.stream_of(ORDER_ID))
    order = await agg.get(ORDER, ORDER_ID)
    assert order == orders.fold(rows([new for _, new in order_twins]))
    assert order.placed_at == datetime(2026, 11, 20, 15, 15, tzinfo=UTC)
    assert (order.state, order.paid) == ("PAID", 2500)
    cart_twins = await stored_and_current(store, carts.stream_of(CART_ID))
    cart = await agg.get(CART, CART_ID)
    assert cart == carts.fold(rows([new for _, new in cart_twins]))
    assert cart.state == carts.ABANDONED_STATE

    # Commands decide from the old history and append in the current shape after it.
    shipped = await OrderCommands(store).ship(ORDER_ID, "", "DHL", "1Z999", "")
    assert (shipped.state, shipped.placed_at) == ("SHIPPED", order.placed_at)
    assert await agg.get(ORDER, ORDER_ID) == shipped
    assert (await store.verify()).ok


async def test_the_command_side_reads_an_old_log_in_memory() -> None:
    await check_command_side(InMemoryEventStore())


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn, max_size=6)
    yield s
    await s.close()


async def test_the_command_side_reads_an_old_log_on_postgres(store: PostgresEventStore) -> None:
    await check_command_side(store)


async def test_decoded_old_events_equal_decoded_current_ones(store: PostgresEventStore) -> None:
    await write_old_log(store)
    for stream in LOGS:
        for old, new in await stored_and_current(store, stream):
            assert decode(old) == decode(new)  # the whole envelope, message included
            assert rpc.published_message(old, events_pb2) == decode(new).message
    placed = decode((await store.read_stream(orders.stream_of(ORDER_ID)))[0]).message
    assert isinstance(placed, events_pb2.OrderPlaced)
    assert placed.place_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 20, 15, 15, tzinfo=UTC)


async def table(store: PostgresEventStore, schema: str, name: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.pool.fetch(f"SELECT * FROM {schema}.{name} ORDER BY 1")]


async def project_current_twins(store: PostgresEventStore, projection: Projection) -> str:
    """Project the current-shape twins of the log into a schema of their own; return it."""
    schema = f"{projection.schema}_current"
    async with store.pool.acquire() as conn:
        await ensure_schema(conn, projection, schema)
    runner = ProjectionRunner(store, projection, name=f"{projection.name}-current", schema=schema)
    for stream in LOGS:
        twins = [new for _, new in await stored_and_current(store, stream)]
        if projection.categories is None or twins[0].category in projection.categories:
            await runner.process(twins, twins[-1].position)
    return schema


async def test_the_read_models_of_an_old_log_equal_those_of_the_current_shape(
    store: PostgresEventStore,
) -> None:
    await write_old_log(store)
    for projection in (OrdersProjection(), CartsProjection()):
        await ProjectionRunner(store, projection).catch_up()
        current = await project_current_twins(store, projection)
        tables = ("orders", "customer_metrics") if projection.name == "orders" else ("carts",)
        for t in tables:
            got = await table(store, projection.schema, t)
            assert got and got == await table(store, current, t), t
    first = (await table(store, "orders_rm", "customer_metrics"))[0]["first_order_at"]
    assert first == datetime(2026, 11, 20, 15, 15, tzinfo=UTC)


async def test_the_recovery_reactor_reads_an_old_order_placed(store: PostgresEventStore) -> None:
    await write_old_log(store)
    await ProjectionRunner(store, CartsProjection()).catch_up()
    reactor = Reactor(CartRecovery(store, timedelta(days=36500)))
    await ProjectionRunner(store, reactor).catch_up()
    cart = await CommandRunner(store).get(CART, CART_ID)
    assert cart.recovered
    recovered = (await store.read_stream(carts.stream_of(CART_ID)))[-1]
    assert (recovered.type, recovered.data["order_id"]) == (carts.RECOVERED, ORDER_ID)
