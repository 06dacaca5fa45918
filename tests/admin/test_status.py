"""ListProjections on every registered service's project role: each projection, reactor and
engine it runs, with its checkpoint, lag, leader and parked count, measured from the database."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import UTC, datetime

import asyncpg
from google.protobuf import json_format

from crm.admin.v1 import admin_pb2 as apb
from crm.admin.v1 import admin_pb2_grpc as apb_grpc
from crm.orders.v1 import events_pb2 as oepb
from services.orders.spec import SPEC as ORDERS
from services.registry import SERVICES
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit import calls
from shared.testing.service_env import projecting
from tests.admin.conftest import Suite


async def test_every_projection_of_every_service_is_listed_caught_up_with_its_leader(
    suite: Suite,
) -> None:
    await suite.activity()
    answers = await suite.settled()
    head = await suite.store.head_position()
    for spec in SERVICES:
        answer = answers[spec.name]
        assert answer.service == spec.name
        assert answer.head_position == head
        names = {p.name for p in answer.projections}
        declared = {p.name for p in spec.projections()}
        assert declared <= names, f"{spec.name}: {declared - names} not listed"
        for p in answer.projections:
            assert p.state == apb.Projection.STATE_RUNNING, p
            assert (p.leader.host, p.leader.pid) == (socket.gethostname(), os.getpid())
            assert p.checkpoint_position == head and p.lag_events == 0 and p.lag_seconds == 0
            assert p.parked_count == 0
    kinds = {p.name: p.kind for a in answers.values() for p in a.projections}
    assert kinds["cart-recovery"] == apb.Projection.KIND_REACTOR
    assert kinds["segmentation-engine"] == apb.Projection.KIND_ENGINE
    assert kinds["contacts"] == apb.Projection.KIND_READ_MODEL


async def test_a_projection_led_by_someone_else_lags_until_its_runner_takes_over(
    dsn: str,
) -> None:
    """The lock holder is a session that recorded no leader (a tool): its backend is shown, the
    lag grows with the age of the oldest event not applied; once it lets go, the role's own
    runner leads and catches up."""
    other = await asyncpg.connect(dsn)
    await other.execute("SELECT pg_advisory_lock(hashtext('projection:orders'))")
    foreign = await other.fetchval("SELECT pg_backend_pid()")
    store = await PostgresEventStore.connect(dsn, max_size=4)
    try:
        async with projecting(ORDERS, dsn) as role:
            admin = apb_grpc.AdminServiceStub(role.channel)
            event = NewEvent("crm.orders.v1.OrderPlaced", placed_order())
            await store.append(f"order-{uuid.uuid4()}", [event], StreamState.NO_STREAM)
            await asyncio.sleep(0.3)
            orders = await projection(admin, "orders")
            assert orders.state == apb.Projection.STATE_RUNNING
            assert (orders.leader.backend_pid, orders.leader.host) == (foreign, "")
            assert orders.lag_events == 1 and orders.lag_seconds >= 0.3
            assert orders.checkpoint_position < await store.head_position()
            carts = await projection(admin, "carts")  # led by the role: caught up
            assert carts.leader.pid == os.getpid()
            await other.close()
            for _ in range(100):
                orders = await projection(admin, "orders")
                if orders.lag_events == 0 and orders.leader.pid == os.getpid():
                    break
                await asyncio.sleep(0.1)
            assert orders.lag_events == 0 and orders.lag_seconds == 0
            assert orders.leader.host == socket.gethostname()
            assert orders.checkpoint_position == await store.head_position()
    finally:
        await other.close()
        await store.close()


async def projection(admin: apb_grpc.AdminServiceStub, name: str) -> apb.Projection:
    answer = await admin.ListProjections(apb.ListProjectionsRequest())
    return next(p for p in answer.projections if p.name == name)


def placed_order() -> dict[str, object]:
    message = oepb.OrderPlaced(
        order_id=str(uuid.uuid4()),
        contact_id=str(uuid.uuid4()),
        currency="EUR",
        items=[oepb.LineItem(sku="TEA-1", name="tea", quantity=1, unit_price=500)],
        subtotal=500,
        total=500,
        place_time=calls.timestamp(datetime.now(UTC)),
    )
    data: dict[str, object] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return data
