"""flow_timer_lateness_p99_ms (issue 12): how late the notifications flow engine's delay steps
fire with 100k runs waiting.

Setup (never timed), in a database of its own (the engine reads contacts' and orders' events
from the start of the log, and the shared bench database holds millions by then): the shipped
abandoned-cart flow (examples/flows/abandoned-cart.yaml: wait an hour, send a reminder, wait
until a day after) created through FlowCommands, and RUNS runs waiting in its first delay:

- ENGINE_RUNS started by the engine itself: CartAbandoned events published in bulk and the
  engine (FlowEngine under a ProjectionRunner in this process) catching up; its rate, runs
  started per second, is reported beside the metric. These wait their hour, past the bench.
- the rest written as the engine writes a run it starts (the CartAbandoned event, then
  runs.start's events with the engine's ids and metadata, and the run's row), in bulk, as if
  each cart had been abandoned an hour before its timer comes due: due RATE a second, the
  first MEASURED seconds of them (10k) from just after the setup, the others an hour later.

Measured: FlowTimers.run, the worker loop the project role runs (0.1 s poll, batches of 200),
in this process, until every run due in the MEASURED seconds has fired. A run's lateness: the
commit of the transaction that fired it (the reminder step's events appended, its row and its
send effect written) minus its wake_at; a run not fired DRAIN seconds after the last is due
counts as infinitely late. Baseline in the same run: the same due instants as rows of a plain
table (id, due_at), as many rows as runs waiting, fired by the least a database timer does
(SELECT ... ORDER BY due_at LIMIT 200 FOR UPDATE SKIP LOCKED, DELETE them, commit) in the
same loop with the same poll. Ratio: our p99 / the baseline's (lower is better). Goal: p99 ≤
1000 ms.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import yaml
from google.protobuf import json_format

from bench.common import Metric, log, percentile, scaled
from crm.notifications.v1 import flow_definition_pb2 as flows_pb2
from services.notifications.adapters import flow_run_tables as t
from services.notifications.adapters.flow_engine import UTC_ZONE, FlowEngine
from services.notifications.adapters.flow_timers import BATCH, FlowTimers
from services.notifications.application.flows import FlowCommands
from services.notifications.application.message_stream import NS
from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows import run as runs
from services.notifications.domain.flows import trigger
from services.orders.domain import cart as carts
from services.registry import SERVICES
from shared.application.commands import new_events, new_id
from shared.domain.timestamps import timestamp_text
from shared.eventstore import NewEvent, RecordedEvent, StreamAppend, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.reactor import Cause
from shared.projections.runner import ProjectionRunner
from shared.supervision import sleep_unless_stopped
from shared.testing.postgres import with_database
from shared.testing.suite import migrate_everything

FLOW = Path(__file__).parents[1] / "services/notifications/examples/flows/abandoned-cart.yaml"
RUNS = 100_000
ENGINE_RUNS = 1_000  # started by the engine itself: they wait an hour, past the bench
RATE = 500.0  # the other runs' timers come due this many a second, one after the other
MEASURED = 20.0  # seconds of runs coming due RATE a second, each measured
DRAIN = 60.0  # seconds after the window before a run not fired counts as infinitely late
CHUNK = 500  # runs per bulk write
POLL = 0.1  # FlowTimers' default poll
ROW_COLUMNS = (
    "run_id",
    "flow_id",
    "flow_version",
    "contact_id",
    "trigger_key",
    "trigger",
    "status",
    "step",
    "visits",
    "wake_at",
    "waiting_for",
    "ended",
    "start_time",
    "version",
)


def _abandoned(cart_id: str, contact_id: str, n: int, at: datetime) -> dict[str, Any]:
    """A CartAbandoned as orders decides it (domain/cart.py decide_abandon)."""
    quantity, price = 1 + n % 3, 990 + 100 * (n % 50)  # minor units
    item = {"sku": f"SKU-{n % 50}", "name": "Item", "quantity": quantity, "unit_price": price}
    return {
        "cart_id": cart_id,
        "contact_id": contact_id,
        "currency": "EUR",
        "subtotal": quantity * price,
        "items": [{**item, "discount": 0}],
        "last_activity_time": timestamp_text(at),
        "abandon_after_seconds": 3600,
    }


@dataclass
class Setup:
    store: PostgresEventStore
    flow_id: str
    flow: fd.Flow
    engine_rate: float  # runs started per second by the engine catching up


async def _own_database(dsn: str) -> str:
    name = f"crm_bench_flows_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _engine_runs(store: PostgresEventStore, runner: ProjectionRunner, n: int) -> float:
    """``n`` CartAbandoned published in bulk, the engine catching up: runs started per second."""
    now = datetime.now(UTC)
    for first in range(0, n, CHUNK):
        appends = []
        for i in range(first, min(n, first + CHUNK)):
            cart_id, contact_id = str(uuid.uuid4()), str(uuid.uuid4())
            data = _abandoned(cart_id, contact_id, i, now)
            event = NewEvent(carts.ABANDONED, data, metadata={"schema": 1, "actor": "bench"})
            appends.append(StreamAppend(carts.stream_of(cart_id), [event], StreamState.NO_STREAM))
        await store.append_multi(appends)
    started = time.perf_counter()
    await runner.catch_up()
    took = time.perf_counter() - started
    got = await store.pool.fetchval(f"SELECT count(*) FROM {t.SCHEMA}.runs")
    if got != n:
        raise RuntimeError(f"the engine started {got} runs for {n} abandoned carts")
    return n / took


def _chunk(s: Setup, due: list[datetime], first: int) -> tuple[list[StreamAppend], list[Any]]:
    """Runs first.. (CHUNK of them) as the engine writes a run it starts: the CartAbandoned an
    hour (the flow's first delay) before its due instant, the run's events, its row."""
    delay = s.flow.steps[0].action
    assert isinstance(delay, fd.Delay) and delay.duration is not None
    appends, rows = [], []
    for i in range(first, min(len(due), first + CHUNK)):
        cart_id, contact_id = str(uuid.uuid4()), str(uuid.uuid4())
        at = due[i] - delay.duration
        data = _abandoned(cart_id, contact_id, i, at)
        upstream = NewEvent(carts.ABANDONED, data, metadata={"schema": 1, "actor": "bench"})
        cart = carts.stream_of(cart_id)
        appends.append(StreamAppend(cart, [upstream], StreamState.NO_STREAM))
        start = trigger.starts(s.flow, carts.ABANDONED, str(upstream.event_id), data, {})
        assert start is not None
        run_id = new_id(NS, "flowrun", f"{s.flow_id}:{upstream.event_id}")
        events, _ = runs.start(
            run_id, s.flow, s.flow_id, 1, contact_id, start.trigger, at, UTC_ZONE,
            start.trigger_key,
        )  # fmt: skip
        stream = runs.stream_of(run_id)
        recorded = RecordedEvent(
            upstream.event_id, cart, 0, carts.ABANDONED, data, {}, at, 0
        )  # fmt: skip
        cause = Cause(recorded, FlowEngine.name)
        new = new_events(NS, stream, events, cause.request_id, cause.meta())
        appends.append(StreamAppend(stream, new, StreamState.NO_STREAM))
        run = runs.fold(events)
        assert run is not None and run.wake_at == due[i]
        rows.append(
            (
                uuid.UUID(run_id), uuid.UUID(s.flow_id), 1, uuid.UUID(contact_id),
                start.trigger_key, orjson.dumps(dict(run.trigger)).decode(), run.status,
                run.step, run.visits, run.wake_at, "", "", at, len(events) - 1,
            )
        )  # fmt: skip
    return appends, rows


async def _write(s: Setup, appends: list[StreamAppend], rows: list[Any]) -> None:
    async with s.store.pool.acquire() as conn, conn.transaction():
        await s.store.append_batch_on(conn, appends)
        await conn.copy_records_to_table(
            "runs", schema_name=t.SCHEMA, columns=ROW_COLUMNS, records=rows
        )


async def _written_runs(s: Setup, due: list[datetime]) -> dict[str, datetime]:
    """One run per due instant, in bulk (the next chunk prepared in a thread while one is
    written); each run's wake_at by run id."""
    wake: dict[str, datetime] = {}
    writing: asyncio.Task[None] | None = None
    started, waited = time.perf_counter(), 0.0
    for first in range(0, len(due), CHUNK):
        appends, rows = await asyncio.to_thread(_chunk, s, due, first)
        wake.update((str(r[0]), r[9]) for r in rows)
        if writing is not None:
            at = time.perf_counter()
            await writing
            waited += time.perf_counter() - at
        writing = asyncio.create_task(_write(s, appends, rows))
    if writing is not None:
        await writing
    took = time.perf_counter() - started
    log(f"  {len(due):,} runs written in {took:.1f}s ({waited:.1f}s waiting for the writes)")
    return wake


class Commits:
    """When each of the timers' transactions committed, by transaction id (an event's position
    is its transaction id << 20 plus its index): the store's ``committed`` is called right
    after each commit."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.at: dict[int, datetime] = {}
        announce = store.committed

        def committed(position: int, categories: Iterable[str] | None = None) -> None:
            self.at[position >> 20] = datetime.now(UTC)
            announce(position, categories)

        store.committed = committed  # type: ignore[method-assign]


async def _until_fired(
    pool: asyncpg.Pool,
    count_due: str,
    end: datetime,
    fire: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
) -> None:
    """Run ``fire`` until nothing due by ``end`` is left (or DRAIN seconds after it)."""
    stop = asyncio.Event()
    worker = asyncio.create_task(fire(stop))
    try:
        while True:
            await asyncio.sleep(0.25)
            now = datetime.now(UTC)
            if now > end and not await pool.fetchval(count_due, end):
                break
            if now > end + timedelta(seconds=DRAIN) or worker.done():
                break
    finally:
        stop.set()
        await worker


async def _ours(s: Setup, wake: dict[str, datetime], end: datetime) -> list[float]:
    """FlowTimers.run over the waiting runs until every run due by ``end`` has fired; their
    lateness (ms; inf: not fired)."""
    commits = Commits(s.store)
    timers = FlowTimers(s.store, FlowEngine(s.store).definitions, poll_seconds=POLL)
    count_due = f"SELECT count(*) FROM {t.SCHEMA}.runs WHERE wake_at <= $1"
    await _until_fired(s.store.pool, count_due, end, timers.run)
    fired = await s.store.pool.fetch(
        """SELECT position, data->>'run_id' FROM eventstore.events
            WHERE type = $1 AND data->>'step' = 'reminder'""",
        runs.STEP,
    )
    at = {run_id: commits.at[p >> 20] for p, run_id in fired}
    measured = [(run_id, w) for run_id, w in wake.items() if w <= end]
    return [
        (at[run_id] - w).total_seconds() * 1000 if run_id in at else math.inf
        for run_id, w in measured
    ]


async def _baseline(pool: asyncpg.Pool, due: list[datetime], end: datetime) -> list[float]:
    """The same due instants in a plain table, fired by SELECT ... FOR UPDATE SKIP LOCKED and
    DELETE until every row due by ``end`` has; their lateness (ms; inf: not fired)."""
    await pool.execute(
        """CREATE TABLE bench_timers (id bigint PRIMARY KEY, due_at timestamptz NOT NULL);
           CREATE INDEX bench_timers_due ON bench_timers (due_at)"""
    )
    await pool.copy_records_to_table("bench_timers", records=list(enumerate(due)))
    await pool.execute("VACUUM ANALYZE bench_timers")
    late: list[float] = []

    async def fire(stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with pool.acquire() as conn:
                async with conn.transaction():
                    rows = await conn.fetch(
                        """SELECT id, due_at FROM bench_timers WHERE due_at <= $1
                            ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
                        datetime.now(UTC),
                        BATCH,
                    )
                    if rows:
                        await conn.execute(
                            "DELETE FROM bench_timers WHERE id = ANY($1)", [r[0] for r in rows]
                        )
                at = datetime.now(UTC)
            late.extend((at - r[1]).total_seconds() * 1000 for r in rows if r[1] <= end)
            if len(rows) < BATCH:
                await sleep_unless_stopped(stop, POLL)

    count_due = "SELECT count(*) FROM bench_timers WHERE due_at <= $1"
    await _until_fired(pool, count_due, end, fire)
    measured = sum(1 for d in due if d <= end)
    return late + [math.inf] * (measured - len(late))


def _schedule(n: int, lead: float) -> list[datetime]:
    """``n`` instants RATE a second, the first ``lead`` seconds from now."""
    start = datetime.now(UTC) + timedelta(seconds=lead)
    return [start + timedelta(seconds=i / RATE) for i in range(n)]


def _summary(late: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(percentile(late, 50), 1),
        "p99_ms": round(percentile(late, 99), 1),
        "max_ms": round(max(late), 1),
        "due": len(late),
        "fired": sum(1 for x in late if x != math.inf),
    }


async def lateness(dsn: str, notes: list[str]) -> Metric:
    total = int(scaled(RUNS, minimum=4 * CHUNK))
    by_engine = int(scaled(ENGINE_RUNS, minimum=100))
    written = total - by_engine
    name = await _own_database(dsn)
    own = with_database(dsn, name)
    try:
        await migrate_everything(own, SERVICES)
        store = await PostgresEventStore.connect(own, min_size=4, max_size=4)
        try:
            # As the API sees the file: YAML, the proto, its JSON form (tests/flow_env.py).
            message = json_format.ParseDict(
                yaml.safe_load(FLOW.read_text()), flows_pb2.FlowDefinition()
            )
            definition = json_format.MessageToDict(message, preserving_proto_field_name=True)
            flow_id = (await FlowCommands(store).create(definition)).flow_id
            engine = FlowEngine(store)
            runner = ProjectionRunner(store, engine)
            await runner.catch_up()
            async with store.pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {t.SCHEMA}")
                flow = await engine.definitions.get(conn, flow_id, 1)
            log(f"  setup: {by_engine:,} CartAbandoned, the engine starting their runs")
            rate = await _engine_runs(store, runner, by_engine)
            log(f"  the engine started {rate:,.0f} runs/s")
            s = Setup(store, flow_id, flow, rate)
            # Most wait an hour more (due RATE a second then); the runs due in the measured
            # window are written last, due from when their write (timed by the others') ends.
            near = min(int(scaled(RATE * MEASURED, minimum=CHUNK)), written // 2)
            log(f"  setup: {written - near:,} runs written in bulk, due in an hour")
            started = time.perf_counter()
            await _written_runs(s, _schedule(written - near, 3600 + MEASURED))
            await store.pool.execute(f"VACUUM ANALYZE {t.SCHEMA}.runs")
            lead = 2 + 1.2 * near * (time.perf_counter() - started) / (written - near)
            log(f"  setup: {near:,} runs written in bulk, due {RATE:.0f}/s in {lead:.1f}s")
            due = _schedule(near, lead)
            end = due[-1]
            wake = await _written_runs(s, due)
            waiting = await store.pool.fetchval(
                f"SELECT count(*) FROM {t.SCHEMA}.runs WHERE wake_at IS NOT NULL"
            )
            if datetime.now(UTC) > due[0]:
                notes.append("flow_timer_lateness_p99_ms: the setup ran into the window")
            log(f"  FlowTimers.run: {waiting:,} runs waiting, {RATE:.0f}/s due")
            ours = await _ours(s, wake, end)
            log(f"  baseline: SELECT FOR UPDATE SKIP LOCKED + DELETE, {waiting:,} rows")
            shift = datetime.now(UTC) + timedelta(seconds=2) - due[0]
            later = _schedule(waiting - near, 3600 + MEASURED)
            theirs = await _baseline(store.pool, [d + shift for d in due] + later, end + shift)
        finally:
            await store.close()
    finally:
        await _drop(dsn, name)
    o, b = _summary(ours), _summary(theirs)
    notes.append(
        f"flow_timer_lateness_p99_ms: {waiting:,} runs waiting, due {RATE:.0f}/s, those due in "
        f"{near / RATE:.0f}s ({o['due']:,}) measured: FlowTimers p50 {o['p50_ms']} ms, p99 "
        f"{o['p99_ms']} ms, max {o['max_ms']} ms; a plain SKIP LOCKED + DELETE timer p50 "
        f"{b['p50_ms']} ms, p99 {b['p99_ms']} ms; ratio = ours / that (lower is better); the "
        f"engine catching up {by_engine:,} CartAbandoned started {rate:,.0f} runs/s"
    )
    return Metric(
        "flow_timer_lateness_p99_ms",
        o["p99_ms"],
        "ms",
        b["p99_ms"],
        f"the same due instants in a plain table, SELECT ... FOR UPDATE SKIP LOCKED LIMIT {BATCH}"
        f" + DELETE, the same {POLL}s poll",
        samples=[o["p50_ms"]],
        baseline_samples=[b["p50_ms"]],
        extra={
            "runs_waiting": waiting,
            "due_per_s": RATE,
            "measured_s": round(near / RATE, 1),
            "flow_timers": o,
            "baseline": b,
            "engine_runs_started_per_s": round(rate, 1),
        },
    )
