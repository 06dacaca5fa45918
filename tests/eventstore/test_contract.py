"""The event store contract (docs/architecture.md §2), run against every backend.

PostgreSQL always runs (embedded, or DATABASE_URL), and so does the in-memory store (the fake
that application tests use); EventStoreDB runs when EVENTSTORE_URL is set.
Every test uses its own stream category, so the suite also works on a shared ESDB server.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.eventstore import (
    Direction,
    DuplicateEventId,
    NewEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)
from shared.eventstore.memory import InMemoryEventStore
from shared.eventstore.postgres import PostgresEventStore

BACKENDS = ["postgres", "memory", "eventstoredb"]


def is_esdb(store: Any) -> bool:
    """EventStoreDB cannot append to several streams atomically nor compare content on id
    reuse (documented in esdb.py); the other backends can."""
    return not isinstance(store, PostgresEventStore | InMemoryEventStore)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, dsn: str) -> AsyncIterator[Any]:
    if request.param == "postgres":
        s: Any = await PostgresEventStore.connect(dsn, max_size=20)
    elif request.param == "memory":
        s = InMemoryEventStore()
    else:
        url = os.environ.get("EVENTSTORE_URL")
        if not url:
            pytest.skip("EVENTSTORE_URL not set: no EventStoreDB/KurrentDB server to test")
        from shared.eventstore.esdb import EventStoreDBStore

        s = await EventStoreDBStore.connect(url)
    yield s
    await s.close()


@pytest.fixture
def cat() -> str:
    return "t" + uuid.uuid4().hex[:12]


def ev(type_: str = "Tested", **data: Any) -> NewEvent:
    return NewEvent(type=f"test.v1.{type_}", data=data, metadata={"actor": "contract-test"})


async def test_append_and_read_stream(store: Any, cat: str) -> None:
    s = f"{cat}-1"
    r = await store.append(s, [ev(n=1), ev(n=2)], StreamState.NO_STREAM)
    assert (r.version, r.idempotent) == (1, False)
    events = await store.read_stream(s)
    assert [e.version for e in events] == [0, 1]
    assert [e.data["n"] for e in events] == [1, 2]
    assert events[0].metadata["actor"] == "contract-test"
    assert events[0].position < events[1].position == r.position
    assert events[0].category == cat
    back = await store.read_stream(s, -1, Direction.BACKWARDS, limit=1)
    assert [e.version for e in back] == [1]
    assert await store.read_stream(f"{cat}-missing") == []
    assert await store.stream_version(s) == 1
    assert await store.stream_version(f"{cat}-missing") == -1


async def test_expected_version_rules(store: Any, cat: str) -> None:
    s = f"{cat}-1"
    with pytest.raises(WrongExpectedVersion):
        await store.append(s, [ev()], StreamState.EXISTS)
    with pytest.raises(WrongExpectedVersion):
        await store.append(s, [ev()], 0)
    await store.append(s, [ev()], StreamState.NO_STREAM)
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append(s, [ev()], StreamState.NO_STREAM)
    assert info.value.actual == 0
    with pytest.raises(WrongExpectedVersion):
        await store.append(s, [ev()], 5)
    assert (await store.append(s, [ev()], 0)).version == 1
    assert (await store.append(s, [ev()], StreamState.ANY)).version == 2
    assert (await store.append(s, [ev()], StreamState.EXISTS)).version == 3
    assert len(await store.read_stream(s)) == 4


async def test_idempotent_by_event_id(store: Any, cat: str) -> None:
    s = f"{cat}-1"
    batch = [ev(n=1), ev(n=2)]
    first = await store.append(s, batch, StreamState.NO_STREAM)
    again = await store.append(s, batch, StreamState.NO_STREAM)
    assert again.idempotent and again.version == first.version
    assert len(await store.read_stream(s)) == 2


async def test_same_id_other_content_is_rejected(store: Any, cat: str) -> None:
    if is_esdb(store):
        pytest.skip("ESDB does not compare content on id reuse")
    s = f"{cat}-1"
    e = ev(n=1)
    await store.append(s, [e], StreamState.NO_STREAM)
    with pytest.raises(DuplicateEventId):
        await store.append(s, [NewEvent(e.type, {"n": 2}, event_id=e.event_id)], StreamState.ANY)
    assert len(await store.read_stream(s)) == 1


async def test_read_all_in_order_with_filters(store: Any, cat: str) -> None:
    other = cat + "x"
    await store.append(f"{cat}-a", [ev("A", i=0)], StreamState.NO_STREAM)
    await store.append(f"{other}-b", [ev("B", i=1)], StreamState.NO_STREAM)
    await store.append(f"{cat}-a", [ev("B", i=2)], 0)
    everything = await _read_everything(store, categories=[cat, other])
    assert [e.data["i"] for e in everything] == [0, 1, 2]
    positions = [e.position for e in everything]
    assert positions == sorted(positions) and len(set(positions)) == 3
    only_cat = await _read_everything(store, categories=[cat])
    assert [e.data["i"] for e in only_cat] == [0, 2]
    only_b = await _read_everything(store, categories=[cat, other], types=["test.v1.B"])
    assert [e.data["i"] for e in only_b] == [1, 2]


async def test_filtered_page_reports_scanned_position(store: Any, cat: str) -> None:
    await store.append(f"{cat}-a", [ev(i=0)], StreamState.NO_STREAM)
    head = await store.head_position()
    page = await store.read_all(0, categories=[cat + "nothing"], limit=10)
    assert page.events == []
    assert page.last_position >= head  # a filtered reader may move past what it skipped


async def test_multi_stream_append_is_atomic(store: Any, cat: str) -> None:
    if is_esdb(store):
        pytest.skip("append_multi is not atomic on EventStoreDB (documented)")
    await store.append(f"{cat}-b", [ev()], StreamState.NO_STREAM)
    with pytest.raises(WrongExpectedVersion):
        await store.append_multi(
            [
                StreamAppend(f"{cat}-a", [ev()], StreamState.NO_STREAM),
                StreamAppend(f"{cat}-b", [ev()], StreamState.NO_STREAM),  # conflicts
            ]
        )
    assert await store.read_stream(f"{cat}-a") == []
    batch = [
        StreamAppend(f"{cat}-a", [ev()], StreamState.NO_STREAM),
        StreamAppend(f"{cat}-b", [ev()], 0),
    ]
    ok = await store.append_multi(batch)
    assert [r.version for r in ok] == [0, 1]
    again = await store.append_multi(batch)  # a retry of the very same events: nothing written
    assert [(r.version, r.idempotent) for r in again] == [(0, True), (1, True)]
    assert len(await store.read_stream(f"{cat}-b")) == 2
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append_multi(
            [
                StreamAppend(f"{cat}-c", [ev()], StreamState.NO_STREAM),
                StreamAppend(f"{cat}-b", [ev()], 0),
            ]
        )
    assert info.value.stream == f"{cat}-b" and info.value.actual == 1


async def test_multi_stream_append_events_get_distinct_positions(store: Any, cat: str) -> None:
    if is_esdb(store):
        pytest.skip("append_multi is not atomic on EventStoreDB (documented)")
    ok = await store.append_multi(
        [
            StreamAppend(f"{cat}-x", [ev(), ev()], StreamState.NO_STREAM),
            StreamAppend(f"{cat}-y", [ev()], StreamState.NO_STREAM),
        ]
    )
    events = (await store.read_stream(f"{cat}-x")) + (await store.read_stream(f"{cat}-y"))
    positions = [e.position for e in events]
    assert len(set(positions)) == 3 and positions == sorted(positions)
    assert ok[1].position == positions[-1]


async def test_get_event_and_head(store: Any, cat: str) -> None:
    e = ev(n=7)
    r = await store.append(f"{cat}-1", [e], StreamState.NO_STREAM)
    got = await store.get_event(e.event_id)
    assert got is not None and got.data == {"n": 7} and got.position == r.position
    assert await store.get_event(uuid.uuid4()) is None
    assert await store.head_position() >= r.position


async def test_verify_hash_chain(store: Any, cat: str) -> None:
    s = f"{cat}-1"
    await store.append(s, [ev(n=1), ev(n=2)], StreamState.NO_STREAM)
    await store.append(s, [ev(n=3)], 1)
    report = await store.verify(s)
    assert report.ok and report.events == 3 and report.streams == 1


async def test_race_one_winner_per_version(store: Any, cat: str) -> None:
    s = f"{cat}-1"
    await store.append(s, [ev()], StreamState.NO_STREAM)

    async def attempt(i: int) -> bool:
        try:
            await store.append(s, [ev(writer=i)], 0)
            return True
        except WrongExpectedVersion:
            return False

    for round_ in range(5):
        outcomes = await asyncio.gather(*(attempt(i) for i in range(12)))
        assert sum(outcomes) == 1, f"round {round_}: {sum(outcomes)} winners"
        # next round races on the next version
        version = await store.stream_version(s)
        assert version == 1
        await store.append(s, [ev()], StreamState.ANY)
        s = f"{cat}-{round_ + 2}"
        await store.append(s, [ev()], StreamState.NO_STREAM)


async def test_race_same_ids_resent_one_copy(store: Any, cat: str) -> None:
    s = f"{cat}-1"
    batch = [ev(n=1), ev(n=2)]
    results = await asyncio.gather(
        *(store.append(s, batch, StreamState.NO_STREAM) for _ in range(10)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors
    written = [r for r in results if not isinstance(r, BaseException) and not r.idempotent]
    assert len(written) == 1
    assert len(await store.read_stream(s)) == 2


async def test_subscription_catches_up_then_goes_live(store: Any, cat: str) -> None:
    await store.append(f"{cat}-1", [ev(i=0), ev(i=1)], StreamState.NO_STREAM)
    seen: list[int] = []
    done = asyncio.Event()

    async def consume() -> None:
        async for page in store.subscribe(0, categories=[cat], batch_size=10, idle_timeout=30):
            seen.extend(e.data["i"] for e in page.events)
            if len(seen) >= 4:
                done.set()
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    assert seen == [0, 1]
    await store.append(f"{cat}-2", [ev(i=2), ev(i=3)], StreamState.NO_STREAM)
    # idle_timeout is 30 s: arriving within 5 s means the notification woke the reader
    await asyncio.wait_for(done.wait(), 5)
    await task
    assert seen == [0, 1, 2, 3]


async def _read_everything(store: Any, **filters: Any) -> list[Any]:
    out, after = [], 0
    while True:
        page = await store.read_all(after, limit=2, **filters)
        out.extend(page.events)
        if not page.events and page.last_position == after:
            return out
        after = page.last_position


async def test_unit_of_work_commits_its_appends(store: Any, cat: str) -> None:
    async with store.transaction() as uow:
        await uow.append_multi([StreamAppend(f"{cat}-u", [ev(n=1)], StreamState.NO_STREAM)])
        await uow.append_multi([StreamAppend(f"{cat}-u", [ev(n=2)], 0)])
    assert [e.data["n"] for e in await store.read_stream(f"{cat}-u")] == [1, 2]
    if uow.connection is None:
        return  # no transactions on this backend: each append committed by itself
    with pytest.raises(RuntimeError):
        async with store.transaction() as uow:
            await uow.append_multi([StreamAppend(f"{cat}-v", [ev()], StreamState.NO_STREAM)])
            await uow.connection.execute("SELECT 1")  # other writes share the transaction
            raise RuntimeError("abandoned before the commit")
    assert await store.read_stream(f"{cat}-v") == []


async def test_read_streams_and_heads(store: Any, cat: str) -> None:
    await store.append(f"{cat}-a", [ev(n=1), ev(n=2)], StreamState.NO_STREAM)
    await store.append(f"{cat}-b", [ev(n=3)], StreamState.NO_STREAM)
    streams = await store.read_streams([f"{cat}-a", f"{cat}-b", f"{cat}-none"])
    assert {s: [e.data["n"] for e in es] for s, es in streams.items()} == {
        f"{cat}-a": [1, 2],
        f"{cat}-b": [3],
    }
    heads = await store.read_heads([f"{cat}-a", f"{cat}-b", f"{cat}-none"])
    assert {s: e.version for s, e in heads.items()} == {f"{cat}-a": 1, f"{cat}-b": 0}
