"""PostgreSQL restarted three times under load, with every role running as a real process:
no process restarts, every runner, reactor and timer resumes by itself, callers only ever see
OK or a retryable UNAVAILABLE, nothing acknowledged is lost, each read model equals a fresh
rebuild of the same log, and the log matches every signed checkpoint written meanwhile."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from services.contacts.adapters.consent_readmodel import ConsentProjection
from services.contacts.adapters.readmodel import ContactsProjection
from services.orders.adapters.readmodel import CartsProjection, OrdersProjection
from services.orders.domain import cart as carts
from services.registry import SERVICES
from shared.db import embedded
from shared.eventstore.audit.checkpoints import SigningKey
from shared.eventstore.audit.postgres import PostgresAuditLog
from shared.eventstore.audit.verify import verify_log
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import Projection
from shared.projections.runner import ProjectionRunner
from shared.testing.postgres import restart_embedded, stop_embedded
from shared.testing.suite import migrate_everything
from tests.e2e.processes import SERVING, Proc, Retrying

pytestmark = pytest.mark.slow

PROJECTIONS: list[Projection] = [
    ContactsProjection(),
    ConsentProjection(),
    OrdersProjection(),
    CartsProjection(),
]
KEY = SigningKey.generate()  # contacts-project signs checkpoints with it, as deployed


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A server of this test's own: restarting it disturbs no other test."""
    dsn, handle = embedded.start(tmp_path / "pgdata")
    yield dsn, handle
    stop_embedded(handle)


@pytest.fixture
async def suite(server: tuple[str, Any]) -> AsyncIterator[list[Proc]]:
    dsn, _ = server
    await migrate_everything(dsn, SERVICES)
    fast = {"LOG_LEVEL": "ERROR", "DB_POOL_SIZE": "6"}
    contacts = Proc("serve", dsn, "contacts", **fast)
    procs = [
        contacts,
        Proc(
            "project",
            dsn,
            "contacts",
            CHECKPOINT_SIGNING_KEY=KEY.private_text(),
            CHECKPOINT_INTERVAL_SECONDS="0.3",
            **fast,
        ),
        Proc(
            "serve",
            dsn,
            "orders",
            CONTACTS_TARGET=f"127.0.0.1:{contacts.grpc_port}",
            WEBHOOK_PORT="0",
            **fast,
        ),
        Proc(
            "project",
            dsn,
            "orders",
            CART_ABANDON_AFTER_SECONDS="1",
            ABANDONMENT_POLL_SECONDS="0.2",
            **fast,
        ),
    ]
    try:
        for p in procs:
            await p.wait_health(SERVING, timeout=60)
        yield procs
    finally:
        for p in procs:
            p.kill()


class Load:
    """Customers registering, ordering and filling carts through the serve processes; each
    call is retried with its request id until acknowledged."""

    def __init__(self, contacts: Proc, orders: Proc) -> None:
        self.contacts = pb_grpc.ContactsServiceStub(contacts.channel())
        self.orders = opb_grpc.OrdersServiceStub(orders.channel())
        self.acked: dict[str, list[str]] = collections.defaultdict(list)
        self.calls = Retrying()
        self.until_acked = self.calls.until_acked
        self.stop = asyncio.Event()

    async def customer(self, i: int) -> None:
        r = await self.until_acked(
            self.contacts.RegisterContact,
            pb.RegisterContactRequest(email=f"c{i}@example.com", request_id=f"reg-{i}"),
        )
        contact_id = r.contact.contact_id
        self.acked["contacts"].append(contact_id)
        who = opb.CustomerRef(contact_id=contact_id)
        item = epb.LineItem(sku="TEA-1", quantity=1, unit_price=1250)
        if i % 2 == 0:
            r = await self.until_acked(
                self.orders.PlaceOrder,
                opb.PlaceOrderRequest(
                    customer=who, currency="EUR", items=[item], request_id=f"order-{i}"
                ),
            )
            self.acked["orders"].append(r.order.order_id)
        if i % 3 == 0:
            r = await self.until_acked(
                self.orders.CreateCart,
                opb.CreateCartRequest(customer=who, currency="EUR", request_id=f"cart-{i}"),
            )
            await self.until_acked(
                self.orders.AddCartItem,
                opb.AddCartItemRequest(cart_id=r.cart.cart_id, item=item, request_id=f"add-{i}"),
            )
            self.acked["carts"].append(r.cart.cart_id)

    async def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            await asyncio.gather(*(self.customer(i * 4 + k) for k in range(4)))


async def wait_for_head(pool: asyncpg.Pool, names: list[str], timeout: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        head = await pool.fetchval("SELECT coalesce(max(position), 0) FROM eventstore.events")
        rows = await pool.fetch(
            "SELECT name, position FROM projections.checkpoints WHERE name = ANY($1)", names
        )
        behind = {n: 0 for n in names} | {r["name"]: r["position"] for r in rows}
        if all(p >= head for p in behind.values()):
            return
        assert asyncio.get_running_loop().time() < deadline, f"runners behind {head}: {behind}"
        await asyncio.sleep(0.1)


async def snapshot(pool: asyncpg.Pool, schema: str) -> dict[str, list[str]]:
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    out = {}
    for t in tables:
        name = t["table_name"]
        rows = await pool.fetch(f'SELECT to_jsonb(t)::text FROM "{schema}"."{name}" t ORDER BY 1')
        out[name] = [r[0] for r in rows]
    return out


async def wait_for_event(pool: asyncpg.Pool, stream: str, type_: str) -> None:
    q = "SELECT 1 FROM eventstore.events WHERE stream_id = $1 AND type = $2"
    for _ in range(600):
        if await pool.fetchval(q, stream, type_):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {type_} in {stream}")


async def test_three_database_restarts_under_load(
    server: tuple[str, Any], suite: list[Proc]
) -> None:
    dsn, handle = server
    contacts_serve, contacts_project, orders_serve, orders_project = suite
    pids = [p.p.pid for p in suite]
    load = Load(contacts_serve, orders_serve)
    running = asyncio.create_task(load.run())
    for _ in range(3):
        seen = len(load.acked["contacts"])
        while len(load.acked["contacts"]) < seen + 40:  # real load between restarts
            await asyncio.sleep(0.05)
        await asyncio.to_thread(restart_embedded, handle)
    while len(load.acked["contacts"]) < seen + 80:  # and after the last one
        await asyncio.sleep(0.05)
    load.stop.set()
    await running

    store = await PostgresEventStore.connect(dsn)
    try:
        pool = store.pool
        # The timer and the reactor still work: a new idle cart is abandoned, and an order by
        # its customer recovers it.
        customer = load.acked["contacts"][0]
        who = opb.CustomerRef(contact_id=customer)
        cart = await load.orders.CreateCart(
            opb.CreateCartRequest(customer=who, currency="EUR", request_id="after-cart")
        )
        cart_id = cart.cart.cart_id
        item = epb.LineItem(sku="TEA-2", quantity=1, unit_price=990)
        await load.orders.AddCartItem(opb.AddCartItemRequest(cart_id=cart_id, item=item))
        await wait_for_event(pool, carts.stream_of(cart_id), carts.ABANDONED)
        await load.orders.PlaceOrder(
            opb.PlaceOrderRequest(customer=who, currency="EUR", items=[item], request_id="late")
        )
        await wait_for_event(pool, carts.stream_of(cart_id), carts.RECOVERED)

        names = [p.name for p in PROJECTIONS] + ["cart-recovery"]
        await wait_for_head(pool, names)
        assert [p.p.pid for p in suite] == pids and all(p.p.poll() is None for p in suite)
        for p in (contacts_project, orders_project):  # ready again once every worker runs
            await p.wait_health(SERVING, timeout=60)

        # Nothing acknowledged is lost …
        known = {str(r[0]) for r in await pool.fetch("SELECT contact_id FROM contacts_rm.contacts")}
        assert set(load.acked["contacts"]) <= known
        orders = {str(r[0]) for r in await pool.fetch("SELECT order_id FROM orders_rm.orders")}
        assert set(load.acked["orders"]) <= orders
        assert await pool.fetchval("SELECT count(*) FROM projections.parked") == 0
        # … and every read model equals a fresh rebuild of the same log.
        for projection in PROJECTIONS:
            fresh = f"{projection.schema}__fresh"
            runner = ProjectionRunner(
                store, projection, name=f"{projection.name}#fresh", schema=fresh, replay=True
            )
            await runner.catch_up()
            live = await snapshot(pool, projection.schema)
            assert live == await snapshot(pool, fresh), projection.name
        # The checkpoint writer went on through the restarts, and the log holds exactly what
        # each checkpoint committed to.
        checkpoints = await PostgresAuditLog(pool).checkpoints()
        assert len(checkpoints) >= 3
        report = await verify_log(PostgresAuditLog(pool), checkpoints, pinned=[KEY.public_key])
        assert report.ok and report.checkpoints == len(checkpoints), report.to_json()
    finally:
        await store.close()
    acked = {k: len(v) for k, v in load.acked.items()}
    print(f"acknowledged: {acked}, refused: {load.calls.refused}")
