"""Parked events through the Admin API of a real project role: listed (with the projection's
parked count), shown with the error and the event, retried (still failing: kept with the new
error; fixed: applied live and gone) and skipped (resolved with who and why, no longer
counted)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_status import rpc_status

from crm.admin.v1 import admin_pb2 as apb
from crm.admin.v1 import admin_pb2_grpc as apb_grpc
from services.contacts.spec import SPEC as CONTACTS
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.errors import error_info
from shared.testing import tokens
from shared.testing.service_env import Projecting, projecting
from tests.admin.flaky import append, role

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn, max_size=6)
    yield s
    await s.close()


@pytest.fixture
async def flaky(dsn: str) -> AsyncIterator[Projecting]:
    async with projecting(CONTACTS, dsn, role=role) as r:
        yield r


async def parked_count(admin: apb_grpc.AdminServiceStub) -> int:
    answer = await admin.ListProjections(apb.ListProjectionsRequest())
    return next(p.parked_count for p in answer.projections if p.name == "flaky")


async def until_parked(admin: apb_grpc.AdminServiceStub, n: int) -> list[apb.ParkedEvent]:
    for _ in range(200):
        found = await admin.ListParkedEvents(apb.ListParkedEventsRequest(projection="flaky"))
        if len(found.parked_events) >= n:
            return list(found.parked_events)
        await asyncio.sleep(0.05)
    raise AssertionError("not parked")


async def refused(call: object, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() is code
    status = rpc_status.from_call(info.value)
    assert status is not None
    detail = error_info(status)
    assert detail is not None and (detail.reason, detail.domain) == (reason, "admin.crm")


async def test_a_parked_event_is_listed_shown_then_retried_until_fixed(
    flaky: Projecting, store: PostgresEventStore
) -> None:
    admin = apb_grpc.AdminServiceStub(flaky.channel)
    await append(store, 1)
    poison = await append(store, 2, poison=True)
    await append(store, 3)
    (parked,) = await until_parked(admin, 1)
    assert (parked.projection, parked.event_id, parked.stream) == ("flaky", str(poison), "flaky-2")
    assert "cannot apply 2: not fixed" in parked.error and parked.attempts == 3
    assert not parked.HasField("event")  # listing leaves the event out
    assert await parked_count(admin) == 1
    shown = (
        await admin.GetParkedEvent(
            apb.GetParkedEventRequest(projection="flaky", event_id=str(poison))
        )
    ).parked_event
    assert shown.event.type == "t.v1.Flaked" and json.loads(shown.event.data_json)["poison"]
    # The runner moved on: 1 and 3 are applied.
    applied = "SELECT n FROM flaky_rm.applied ORDER BY n"
    assert [r[0] for r in await store.pool.fetch(applied)] == [1, 3]

    retry = apb.RetryParkedEventRequest(projection="flaky", event_id=str(poison))
    await refused(
        admin.RetryParkedEvent(retry),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PARKED_EVENT_STILL_FAILS",
    )
    (still,) = await until_parked(admin, 1)
    assert still.attempts == 4 and await parked_count(admin) == 1

    await store.pool.execute("INSERT INTO flaky_rm.fixed VALUES (2)")  # the operator's fix
    done = await admin.RetryParkedEvent(retry)
    assert done.parked_event.event_id == str(poison)
    assert [r[0] for r in await store.pool.fetch(applied)] == [1, 2, 3]
    live = "SELECT live FROM flaky_rm.applied WHERE n = 2"
    assert await store.pool.fetchval(live) is True  # applied live, not as a replay
    assert await parked_count(admin) == 0
    await refused(
        admin.RetryParkedEvent(retry),
        grpc.StatusCode.NOT_FOUND,
        "PARKED_EVENT_NOT_FOUND",
    )


async def test_a_skipped_event_is_resolved_with_who_and_why(
    flaky: Projecting, store: PostgresEventStore
) -> None:
    admin = apb_grpc.AdminServiceStub(flaky.channel)
    poison = str(await append(store, 7, poison=True))
    await until_parked(admin, 1)
    skip = apb.SkipParkedEventRequest(projection="flaky", event_id=poison)
    await refused(
        admin.SkipParkedEvent(skip),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_REQUIRED",
    )
    skip.reason = "test data from the load test, never a customer"
    done = (await admin.SkipParkedEvent(skip)).parked_event
    assert (done.resolved_by, done.resolution) == (tokens.NAMES["operator"], skip.reason)
    assert done.HasField("resolve_time")
    assert await parked_count(admin) == 0
    unresolved = await admin.ListParkedEvents(apb.ListParkedEventsRequest())
    assert list(unresolved.parked_events) == []
    every = await admin.ListParkedEvents(apb.ListParkedEventsRequest(include_resolved=True))
    assert [p.event_id for p in every.parked_events] == [poison]
    await refused(
        admin.SkipParkedEvent(skip),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PARKED_EVENT_RESOLVED",
    )
    assert await store.pool.fetchval("SELECT count(*) FROM flaky_rm.applied") == 0


async def test_parked_events_page_and_bad_requests_are_refused(
    flaky: Projecting, store: PostgresEventStore
) -> None:
    admin = apb_grpc.AdminServiceStub(flaky.channel)
    ids = [str(await append(store, n, poison=True)) for n in (11, 12, 13)]
    await until_parked(admin, 3)
    first = await admin.ListParkedEvents(apb.ListParkedEventsRequest(page_size=2))
    assert len(first.parked_events) == 2 and first.next_page_token
    rest = await admin.ListParkedEvents(
        apb.ListParkedEventsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert not rest.next_page_token
    assert [p.event_id for p in [*first.parked_events, *rest.parked_events]] == ids
    await refused(
        admin.ListParkedEvents(
            apb.ListParkedEventsRequest(page_token=first.next_page_token, include_resolved=True)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    get = apb.GetParkedEventRequest(projection="flaky", event_id="not-a-uuid")
    await refused(admin.GetParkedEvent(get), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_EVENT_ID")
    get = apb.GetParkedEventRequest(projection="flaky", event_id=str(uuid.uuid4()))
    await refused(admin.GetParkedEvent(get), grpc.StatusCode.NOT_FOUND, "PARKED_EVENT_NOT_FOUND")
    get = apb.GetParkedEventRequest(projection="nope", event_id=ids[0])
    await refused(admin.GetParkedEvent(get), grpc.StatusCode.NOT_FOUND, "PROJECTION_NOT_FOUND")
