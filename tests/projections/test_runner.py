"""The projection runner against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.eventstore import NewEvent, RecordedEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext
from shared.projections.rebuild import rebuild
from shared.projections.runner import ProjectionRunner, wait_for_checkpoint
from tests.projections.sample import SampleProjection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresEventStore]:
    s = await PostgresEventStore.connect(dsn, max_size=10)
    yield s
    await s.close()


async def fill(store: PostgresEventStore, streams: int, per_stream: int, start: int = 0) -> int:
    last = 0
    for i in range(per_stream):
        for s in range(streams):
            r = await store.append(
                f"s-{s}", [NewEvent("t.v1.Counted", {"n": start + i})], StreamState.ANY
            )
            last = r.position
    return last


async def counts(
    store: PostgresEventStore, schema: str = "sample_rm"
) -> dict[str, tuple[int, int]]:
    rows = await store.pool.fetch(f"SELECT stream_id, n, total FROM {schema}.counts")
    return {r["stream_id"]: (r["n"], r["total"]) for r in rows}


def expected(streams: int, per_stream: int) -> dict[str, tuple[int, int]]:
    return {f"s-{s}": (per_stream, sum(range(per_stream))) for s in range(streams)}


async def test_follows_log_live_and_commits_checkpoint(store: PostgresEventStore) -> None:
    await fill(store, 3, 5)
    runner = ProjectionRunner(store, SampleProjection(), batch_size=4)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    last = await fill(store, 3, 5, start=5)
    await runner.wait_for(last)
    assert await counts(store) == {f"s-{s}": (10, sum(range(10))) for s in range(3)}
    cp = await store.pool.fetchval(
        "SELECT position FROM projections.checkpoints WHERE name='sample'"
    )
    assert cp >= last
    # other categories move the checkpoint without being applied
    other = await store.append("other-1", [NewEvent("t.v1.X", {})], StreamState.NO_STREAM)
    await runner.wait_for(other.position)
    stop.set()
    await task


async def test_only_one_runner_is_active(store: PostgresEventStore) -> None:
    a = ProjectionRunner(store, SampleProjection(), standby_poll=0.05)
    b = ProjectionRunner(store, SampleProjection(), standby_poll=0.05)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    ta = asyncio.create_task(a.run(stop_a))
    last = await fill(store, 2, 3)
    await a.wait_for(last)
    tb = asyncio.create_task(b.run(stop_b))
    await asyncio.sleep(0.3)
    assert a.active and not b.active
    stop_a.set()
    await ta
    last = await fill(store, 2, 3, start=3)
    await b.wait_for(last)  # the standby took over
    assert b.active
    assert await counts(store) == expected(2, 6)
    stop_b.set()
    await tb


async def test_poison_event_is_parked_and_the_rest_applied(store: PostgresEventStore) -> None:
    last = await fill(store, 2, 6)
    runner = ProjectionRunner(store, SampleProjection(poison=3), retry_delay=0.001)
    await runner.catch_up()
    assert runner.position >= last
    parked = await store.pool.fetch("SELECT stream_id, error FROM projections.parked")
    assert sorted(r["stream_id"] for r in parked) == ["s-0", "s-1"]
    assert all("cannot apply n=3" in r["error"] for r in parked)
    assert await counts(store) == {f"s-{s}": (5, sum(range(6)) - 3) for s in range(2)}


async def test_side_by_side_rebuild_without_side_effects(store: PostgresEventStore) -> None:
    await fill(store, 4, 10)
    live = SampleProjection()
    runner = ProjectionRunner(store, live)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await runner.wait_for(await store.head_position())
    effects_before = await store.pool.fetchval("SELECT count(*) FROM sample_rm.effects")
    # corrupt the live read model: the rebuild must repair it while the live runner keeps going
    await store.pool.execute("UPDATE sample_rm.counts SET n = 0")
    writer = asyncio.create_task(fill(store, 4, 10, start=10))
    shadow = SampleProjection()
    position = await rebuild(store, shadow, batch_size=7)
    last = await writer
    await runner.wait_for(max(last, position))
    assert await counts(store) == expected(4, 20)
    assert shadow.replayed and all(shadow.replayed)  # rebuild ran in replay mode
    # the new schema has no side effects from the replayed history, only from live events after
    effects_after = await store.pool.fetchval("SELECT count(*) FROM sample_rm.effects")
    assert effects_after < effects_before + 40
    schemas = await store.pool.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sample%'"
    )
    assert [r[0] for r in schemas] == ["sample_rm"]
    stop.set()
    await task


async def test_kill_9_mid_batch_then_restart_equals_fresh_rebuild(
    store: PostgresEventStore, dsn: str
) -> None:
    await fill(store, 5, 40)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/projections/sample.py"), dsn], env=env
    )
    try:
        # wait until it is part-way through, with more arriving, then kill it without warning
        await wait_for_checkpoint(store.pool, "sample", 1, timeout=30)
        writer = asyncio.create_task(fill(store, 5, 20, start=40))
        await asyncio.sleep(0.15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        await writer
    finally:
        if proc.poll() is None:
            proc.kill()
    cp = await store.pool.fetchval(
        "SELECT position FROM projections.checkpoints WHERE name='sample'"
    )
    head = await store.head_position()
    assert cp < head, "the runner should have been killed before finishing"
    restarted = ProjectionRunner(store, SampleProjection(), standby_poll=0.05)
    await restarted.catch_up()
    fresh = ProjectionRunner(store, SampleProjection(), name="fresh", schema="sample_fresh")
    await fresh.catch_up()
    assert await counts(store) == await counts(store, "sample_fresh") == expected(5, 60)


class _Recording:
    """Reads two types; one of them only in replay (as an engine reads its own events)."""

    name, schema, ddl = "recording", "recording_rm", "CREATE TABLE seen (t text);"
    categories: list[str] | None = ["s"]
    types: list[str] | None = ["t.v1.Counted", "t.v1.Own"]
    replay_only_types = ("t.v1.Own",)

    def __init__(self) -> None:
        self.seen: list[tuple[bool, str]] = []

    async def apply(self, conn: object, events: list[RecordedEvent], ctx: ApplyContext) -> None:
        self.seen += [(ctx.replay, e.type) for e in events]


async def test_replay_only_types_are_read_in_a_rebuild_not_live(
    store: PostgresEventStore,
) -> None:
    await store.append("s-1", [NewEvent("t.v1.Counted", {"n": 1})], StreamState.ANY)
    await store.append("s-1", [NewEvent("t.v1.Own", {})], StreamState.ANY)
    live = _Recording()
    runner = ProjectionRunner(store, live)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await runner.wait_for(await store.head_position())
    stop.set()
    await task
    assert live.seen == [(False, "t.v1.Counted")]
    shadow = _Recording()
    await rebuild(store, shadow)  # type: ignore[arg-type]
    assert shadow.seen == [(True, "t.v1.Counted"), (True, "t.v1.Own")]
