"""The log through the Admin API of a real project role: a stream as of an instant, and the log
as it grows (by category), as the events were stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import pytest

from crm.admin.v1 import admin_pb2 as apb
from crm.admin.v1 import admin_pb2_grpc as apb_grpc
from services.contacts.spec import SPEC as CONTACTS
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.testing.service_env import projecting

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[tuple[apb_grpc.AdminServiceStub, PostgresEventStore]]:
    store = await PostgresEventStore.connect(dsn, max_size=4)
    async with projecting(CONTACTS, dsn) as role:
        yield apb_grpc.AdminServiceStub(role.channel), store
    await store.close()


async def note(store: PostgresEventStore, stream: str, text: str) -> None:
    await store.append(
        stream, [NewEvent("t.v1.Noted", {"text": text}, {"actor": "t"})], StreamState.ANY
    )


async def read(admin: apb_grpc.AdminServiceStub, request: apb.ReadStreamRequest) -> list[apb.Event]:
    return [e async for m in admin.ReadStream(request) for e in m.events]


async def test_a_stream_as_of_an_instant(
    env: tuple[apb_grpc.AdminServiceStub, PostgresEventStore],
) -> None:
    admin, store = env
    await note(store, "note-1", "first")
    await asyncio.sleep(0.05)
    await note(store, "note-1", "second")
    await note(store, "note-2", "elsewhere")
    now = await read(admin, apb.ReadStreamRequest(stream="note-1"))
    assert [json.loads(e.data_json)["text"] for e in now] == ["first", "second"]
    assert [e.version for e in now] == [0, 1] and json.loads(now[0].metadata_json) == {"actor": "t"}
    then = apb.ReadStreamRequest(stream="note-1")
    then.as_of.CopyFrom(now[0].record_time)  # the instant the first was recorded
    assert [e.event_id for e in await read(admin, then)] == [now[0].event_id]
    then.as_of.FromSeconds(now[0].record_time.seconds - 3600)
    assert await read(admin, then) == []  # the stream existed, not yet then
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read(admin, apb.ReadStreamRequest(stream="note-404"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_long_stream_comes_in_chunks_in_version_order(
    env: tuple[apb_grpc.AdminServiceStub, PostgresEventStore],
) -> None:
    admin, store = env
    events = [NewEvent("t.v1.Noted", {"text": str(i)}) for i in range(450)]
    await store.append("note-long", events, StreamState.NO_STREAM)
    chunks = [m async for m in admin.ReadStream(apb.ReadStreamRequest(stream="note-long"))]
    assert len(chunks) >= 3
    assert [e.version for m in chunks for e in m.events] == list(range(450))


async def test_the_tail_follows_the_log_by_category_from_now_or_from_a_position(
    env: tuple[apb_grpc.AdminServiceStub, PostgresEventStore],
) -> None:
    admin, store = env
    await note(store, "note-old", "before the tail")
    tail = admin.TailEvents(apb.TailEventsRequest(category="note"))
    seen: list[str] = []
    messages = tail.__aiter__()
    start = await anext(messages)  # at once: where the tail starts, the end of the log now
    assert not start.events and start.last_position == await store.head_position()

    async def follow() -> None:
        async for m in messages:
            seen.extend(json.loads(e.data_json)["text"] for e in m.events)
            if len(seen) >= 2:
                return

    following = asyncio.create_task(follow())
    await note(store, "other-1", "another category")
    await note(store, "note-a", "one")
    await note(store, "note-b", "two")
    await asyncio.wait_for(following, 20)
    tail.cancel()
    assert seen == ["one", "two"]
    since = admin.TailEvents(apb.TailEventsRequest(category="note", after_position=0))
    texts: list[str] = []
    async for m in since:
        texts.extend(json.loads(e.data_json)["text"] for e in m.events)
        if len(texts) >= 3:
            break
    since.cancel()
    assert texts == ["before the tail", "one", "two"]
