"""Supervision of a role's workers against a real PostgreSQL: a runner outlives any error and
parks nothing for an outage; a failing worker is restarted; readiness and lag tell the truth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.eventstore import ReadAllPage, RecordedEvent
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.server import GrpcServer
from shared.metrics import (
    PARKED_EVENTS,
    PROJECTION_LAG_EVENTS,
    PROJECTION_LAG_SECONDS,
    WORKER_RESTARTS,
)
from shared.projections.lag import update_lag
from shared.projections.model import ApplyContext
from shared.projections.runner import ProjectionRunner
from shared.runtime import Runtime, run_projections
from shared.settings import Settings
from shared.supervision import Worker, supervise
from tests.projections.sample import SampleProjection
from tests.projections.test_runner import counts, expected, fill


class FlakyStore(PostgresEventStore):
    """read_all fails like a connection cut mid-query, ``failures`` times."""

    failures = 0

    async def read_all(self, after: int = 0, **kw: Any) -> ReadAllPage:
        if self.failures:
            self.failures -= 1
            raise asyncpg.exceptions.InternalClientError("another operation is in progress")
        return await super().read_all(after, **kw)


class OutageProjection(SampleProjection):
    """Applying fails as during a database shutdown until ``healed`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.healed = asyncio.Event()
        self.attempts = 0

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        if not self.healed.is_set():
            self.attempts += 1
            raise asyncpg.exceptions.AdminShutdownError("terminating connection")
        await super().apply(conn, events, ctx)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[FlakyStore]:
    s = await FlakyStore.connect(dsn, max_size=10)
    yield s  # type: ignore[misc]
    await s.close()


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_failing_read_restarts_the_runner_from_its_checkpoint(store: FlakyStore) -> None:
    last = await fill(store, 2, 5)
    store.failures = 3
    runner = ProjectionRunner(store, SampleProjection(), batch_size=3)
    before = WORKER_RESTARTS.labels("sample")._value.get()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await runner.wait_for(last, timeout=60)
    assert await counts(store) == expected(2, 5)
    assert WORKER_RESTARTS.labels("sample")._value.get() == before + 3
    stop.set()
    await task


async def test_an_outage_parks_nothing_and_the_runner_resumes_when_it_ends(
    store: FlakyStore,
) -> None:
    last = await fill(store, 2, 4)
    projection = OutageProjection()
    runner = ProjectionRunner(store, projection, batch_size=3, retry_delay=0.001)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await until(lambda: projection.attempts >= 3)
    await until(lambda: not runner.worker.healthy)  # backing off: readiness would say so
    projection.healed.set()
    await runner.wait_for(last, timeout=60)
    assert await counts(store) == expected(2, 4)
    assert await store.pool.fetchval("SELECT count(*) FROM projections.parked") == 0
    assert runner.worker.healthy
    stop.set()
    await task


async def test_supervise_restarts_a_worker_until_stopped() -> None:
    runs, stop = [], asyncio.Event()

    async def work() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("tick failed")
        await stop.wait()

    worker = Worker("tick-test")
    task = asyncio.create_task(supervise(worker, work, stop, backoff=0.001))
    await until(lambda: len(runs) == 3)
    assert worker.healthy and worker.failures == 2 and "tick failed" in worker.last_error
    stop.set()
    await task
    assert not worker.healthy


async def test_a_worker_returning_early_counts_as_failed() -> None:
    runs, stop = [], asyncio.Event()

    async def work() -> None:
        runs.append(1)
        if len(runs) >= 2:
            await stop.wait()

    worker = Worker("early-return-test")
    task = asyncio.create_task(supervise(worker, work, stop, backoff=0.001))
    await until(lambda: len(runs) == 2)
    assert worker.failures == 1 and "returned" in worker.last_error
    stop.set()
    await task


async def serving(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        return int(r.status)


async def test_the_role_is_not_ready_while_a_runner_or_timer_is_down(
    store: FlakyStore, dsn: str
) -> None:
    last = await fill(store, 1, 3)
    projection = OutageProjection()
    timer_fails = asyncio.Event()
    timer_fails.set()

    async def timer() -> None:
        while not stop.is_set():
            if timer_fails.is_set():
                raise asyncpg.exceptions.CannotConnectNowError("the database system is starting")
            await asyncio.sleep(0.01)

    server = GrpcServer(host="127.0.0.1", port=0, grace=0.1)
    await server.start()
    stop = asyncio.Event()
    rt = Runtime(dsn, store.pool, store)
    role = asyncio.create_task(
        run_projections(rt, [projection], Settings(), stop, server=server, workers={"t": timer})
    )
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    await until(lambda: projection.attempts >= 2)
    assert await serving(server.port) == not_serving
    projection.healed.set()
    assert await serving(server.port) == not_serving  # the timer is still failing
    timer_fails.clear()
    while await serving(server.port) != health_pb2.HealthCheckResponse.SERVING:
        await asyncio.sleep(0.05)
    await wait_checkpoint(store, "sample", last)
    stop.set()
    await role
    await server.stop()


async def wait_checkpoint(store: PostgresEventStore, name: str, position: int) -> None:
    q = "SELECT position FROM projections.checkpoints WHERE name = $1"
    while (await store.pool.fetchval(q, name) or 0) < position:
        await asyncio.sleep(0.02)


async def test_lag_is_measured_from_the_store_not_from_the_runner(store: FlakyStore) -> None:
    await fill(store, 2, 3)
    projection = SampleProjection()
    await update_lag(store.pool, store, [projection])  # nobody has run it: all of it is lag
    assert PROJECTION_LAG_EVENTS.labels("sample")._value.get() == 6
    assert PROJECTION_LAG_SECONDS.labels("sample")._value.get() > 0
    runner = ProjectionRunner(store, projection)
    await runner.catch_up()
    await update_lag(store.pool, store, [projection])
    assert PROJECTION_LAG_EVENTS.labels("sample")._value.get() == 0
    assert PROJECTION_LAG_SECONDS.labels("sample")._value.get() == 0


async def test_parked_events_are_counted_from_the_table_by_every_replica(store: FlakyStore) -> None:
    """crm_parked_events is the number of rows in projections.parked, whoever parked them and
    however often the process restarted since: the alert stays up until they are resolved."""
    await fill(store, 2, 6)
    PARKED_EVENTS.labels("sample").set(0)  # a process that parked nothing itself
    await update_lag(store.pool, store, [SampleProjection()])
    assert PARKED_EVENTS.labels("sample")._value.get() == 0
    runner = ProjectionRunner(store, SampleProjection(poison=3), retry_delay=0.001)
    await runner.catch_up()  # parks n=3 of both streams
    await update_lag(store.pool, store, [SampleProjection()])
    assert PARKED_EVENTS.labels("sample")._value.get() == 2
    await store.pool.execute("DELETE FROM projections.parked WHERE stream_id = 's-0'")
    await update_lag(store.pool, store, [SampleProjection()])  # one resolved by an operator
    assert PARKED_EVENTS.labels("sample")._value.get() == 1
