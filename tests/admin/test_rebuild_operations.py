"""Rebuilds as operations of the project role (shared/admin/rebuilds.py), with a deliberately
slow read model: a second request follows the running rebuild instead of starting another, a
role that stops mid-way records it as interrupted and the next one resumes it, and a rebuild
lock held by someone else (a leader rebuilding after a definition change) is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest

from crm.admin.v1 import admin_pb2 as apb
from crm.admin.v1 import admin_pb2_grpc as apb_grpc
from services.contacts.spec import SPEC as CONTACTS
from shared import runtime
from shared.eventstore.postgres import PostgresEventStore
from shared.settings import Settings
from shared.testing.service_env import projecting
from tests.projections.sample import SampleProjection
from tests.projections.test_runner import counts, expected, fill

pytestmark = pytest.mark.timeout(120)
SLOW = {"projection_batch_size": 5}


def slow_role(delay: float) -> Any:
    def work(rt: runtime.Runtime, settings: Any, stop: asyncio.Event) -> runtime.Work:
        return runtime.Work([SampleProjection(slow=delay)])

    async def connect(settings: Settings) -> runtime.Runtime:
        return await runtime.connect(settings, projections=[SampleProjection()])

    async def role(settings: Settings, stop: asyncio.Event) -> None:
        await runtime.project(settings, stop, connect, work, service="sample")

    return role


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn, max_size=4)
    last = await fill(s, 2, 60)
    async with projecting(CONTACTS, dsn, role=slow_role(0)) as fast:  # catch up quickly
        admin = apb_grpc.AdminServiceStub(fast.channel)
        while (await sample(admin)).checkpoint_position < last:
            await asyncio.sleep(0.05)
    yield s
    await s.close()


async def sample(admin: apb_grpc.AdminServiceStub) -> apb.Projection:
    answer = await admin.ListProjections(apb.ListProjectionsRequest())
    return next(p for p in answer.projections if p.name == "sample")


def rebuild(admin: apb_grpc.AdminServiceStub) -> Any:
    return admin.RebuildProjection(apb.RebuildProjectionRequest(projection="sample"))


async def test_a_second_request_follows_the_running_rebuild(
    dsn: str, store: PostgresEventStore
) -> None:
    async with projecting(CONTACTS, dsn, role=slow_role(0.02), settings=SLOW) as role:
        admin = apb_grpc.AdminServiceStub(role.channel)
        first = rebuild(admin)
        opening = await anext(first.__aiter__())
        second = [m.rebuild async for m in rebuild(admin)]
        assert {m.operation_id for m in second} == {opening.rebuild.operation_id}
        rest = [m.rebuild async for m in first]
        assert rest[-1].state == second[-1].state == apb.Rebuild.STATE_DONE
        runs = await store.pool.fetchval("SELECT count(*) FROM projections.rebuilds")
        assert runs == 1
    assert await counts(store) == expected(2, 60)


async def test_a_rebuild_stopped_with_its_role_is_interrupted_then_resumed(
    dsn: str, store: PostgresEventStore
) -> None:
    async with projecting(CONTACTS, dsn, role=slow_role(0.1), settings=SLOW) as role:
        admin = apb_grpc.AdminServiceStub(role.channel)
        async for m in rebuild(admin):
            if m.rebuild.applied_events >= 20:
                break
    # The role stopped (SIGTERM): the rebuild recorded itself as interrupted.
    async with projecting(CONTACTS, dsn, role=slow_role(0), settings=SLOW) as role:
        admin = apb_grpc.AdminServiceStub(role.channel)
        assert (await sample(admin)).last_rebuild.state == apb.Rebuild.STATE_INTERRUPTED
        done = [m.rebuild async for m in rebuild(admin)]
        assert done[-1].state == apb.Rebuild.STATE_DONE
        assert done[-1].resumed_from_position > 0 and done[-1].applied_events < 120
    assert await counts(store) == expected(2, 60)


async def test_a_rebuild_lock_held_elsewhere_is_refused(
    dsn: str, store: PostgresEventStore
) -> None:
    other = await asyncpg.connect(dsn)
    try:
        await other.execute("SELECT pg_advisory_lock(hashtext('rebuild:' || 'sample'))")
        async with projecting(CONTACTS, dsn, role=slow_role(0)) as role:
            admin = apb_grpc.AdminServiceStub(role.channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                [m async for m in rebuild(admin)]
            assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "being rebuilt by its leader" in (info.value.details() or "")
    finally:
        await other.close()
