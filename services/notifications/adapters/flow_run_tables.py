"""The flow engine's tables (schema notifications_flowruns): the flows as the engine knows them,
the contacts' time zones, one row per run (where it waits: ``wake_at``, indexed, so 100k
waiting runs cost rows, not memory) and the effects to carry out (an outbox: sends, tags,
webhooks, questions), each written in the transaction that appends the run's events.

The run functions use unqualified names: the projection runner sets the search path to the
engine's schema (a side-by-side rebuild's own schema), and the timers set it themselves."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.notifications.domain.flows import flow as flows
from services.notifications.domain.flows import run as runs
from services.notifications.domain.flows.run import Effect, Run

SCHEMA = "notifications_flowruns"
EFFECTS = "notifications_pipeline.flow_effects"  # a migration's: rebuilds leave it
DDL = """
CREATE TABLE flows (
    flow_id        uuid   PRIMARY KEY,
    state          text   NOT NULL,
    latest_version bigint NOT NULL
);
CREATE TABLE flow_versions (
    flow_id    uuid   NOT NULL,
    version    bigint NOT NULL,
    definition jsonb  NOT NULL,
    PRIMARY KEY (flow_id, version)
);
CREATE TABLE zones (
    contact_id uuid PRIMARY KEY,
    time_zone  text NOT NULL
);
CREATE TABLE members (
    segment_key text NOT NULL,
    contact_id  uuid NOT NULL,
    PRIMARY KEY (segment_key, contact_id)
);
CREATE TABLE runs (
    run_id       uuid        PRIMARY KEY,
    flow_id      uuid        NOT NULL,
    flow_version bigint      NOT NULL,
    contact_id   uuid        NOT NULL,
    trigger_key  text        NOT NULL,
    trigger      jsonb       NOT NULL,
    status       text        NOT NULL,
    step         text        NOT NULL,
    visits       bigint      NOT NULL,
    wake_at      timestamptz,
    waiting_for  text        NOT NULL,
    ended        text        NOT NULL,
    start_time   timestamptz NOT NULL,
    version      bigint      NOT NULL
);
CREATE INDEX runs_due ON runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX runs_open ON runs (contact_id) WHERE status <> 'ended';
CREATE INDEX runs_key ON runs (flow_id, contact_id, trigger_key);
"""


@dataclass(frozen=True)
class RunRow:
    run: Run
    trigger_key: str
    start_time: datetime
    version: int  # the run stream's version


def run_of(r: asyncpg.Record) -> RunRow:
    run = Run(
        run_id=str(r["run_id"]),
        flow_id=str(r["flow_id"]),
        flow_version=r["flow_version"],
        contact_id=str(r["contact_id"]),
        trigger=orjson.loads(r["trigger"]),
        status=r["status"],
        step=r["step"],
        visits=r["visits"],
        wake_at=r["wake_at"],
        waiting_for=r["waiting_for"],
        ended=r["ended"],
    )
    return RunRow(run, r["trigger_key"], r["start_time"], r["version"])


_SAVE_RUN = """INSERT INTO runs (run_id, flow_id, flow_version, contact_id, trigger_key,
        trigger, status, step, visits, wake_at, waiting_for, ended, start_time, version)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14)
    ON CONFLICT (run_id) DO UPDATE SET status = $7, step = $8, visits = $9,
        wake_at = $10, waiting_for = $11, ended = $12, version = $14"""


def _run_args(row: RunRow) -> tuple[Any, ...]:
    r = row.run
    return (
        uuid.UUID(r.run_id),
        uuid.UUID(r.flow_id),
        r.flow_version,
        uuid.UUID(r.contact_id),
        row.trigger_key,
        orjson.dumps(dict(r.trigger)).decode(),
        r.status,
        r.step,
        r.visits,
        r.wake_at,
        r.waiting_for,
        r.ended,
        row.start_time,
        row.version,
    )


async def save_run(conn: asyncpg.Connection, row: RunRow) -> None:
    await conn.execute(_SAVE_RUN, *_run_args(row))


async def save_runs(conn: asyncpg.Connection, rows: Sequence[RunRow]) -> None:
    """Several runs' rows in one round trip (the statement pipelined)."""
    if rows:
        await conn.executemany(_SAVE_RUN, [_run_args(row) for row in rows])


async def open_runs(conn: asyncpg.Connection, contact_id: str) -> list[RunRow]:
    rows = await conn.fetch(
        "SELECT * FROM runs WHERE contact_id = $1 AND status <> $2 ORDER BY start_time",
        uuid.UUID(contact_id),
        runs.DONE,
    )
    return [run_of(r) for r in rows]


async def open_runs_of_flow(conn: asyncpg.Connection, flow_id: str) -> list[RunRow]:
    rows = await conn.fetch(
        "SELECT * FROM runs WHERE flow_id = $1 AND status <> $2", uuid.UUID(flow_id), runs.DONE
    )
    return [run_of(r) for r in rows]


async def earlier_runs(
    conn: asyncpg.Connection, flow_id: str, contact_id: str, key: str
) -> list[tuple[datetime, bool]]:
    rows = await conn.fetch(
        """SELECT start_time, status = $4 AS ended FROM runs
            WHERE flow_id = $1 AND contact_id = $2 AND trigger_key = $3""",
        uuid.UUID(flow_id),
        uuid.UUID(contact_id),
        key,
        runs.DONE,
    )
    return [(r["start_time"], r["ended"]) for r in rows]


async def due_runs(conn: asyncpg.Connection, now: datetime, limit: int) -> list[RunRow]:
    """Runs whose wait is over, locked for this transaction (others skip them); a paused
    flow's runs wait until it is resumed."""
    rows = await conn.fetch(
        """SELECT r.* FROM runs r JOIN flows f ON f.flow_id = r.flow_id AND f.state = $3
            WHERE r.wake_at <= $1 ORDER BY r.wake_at LIMIT $2
            FOR UPDATE OF r SKIP LOCKED""",
        now,
        limit,
        flows.ACTIVE,
    )
    return [run_of(r) for r in rows]


def effect_data(effect: Effect, run: Run) -> tuple[str, dict[str, Any]]:
    """An effect as its outbox row: the request id and what carrying it out needs."""
    base: dict[str, Any] = {
        "effect": type(effect).__name__.lower(),
        "step": effect.step,
        "run_id": run.run_id,
        "flow_id": run.flow_id,
        "flow_version": run.flow_version,
        "contact_id": run.contact_id,
    }
    if isinstance(effect, runs.Ask):
        request_id = f"{run.run_id}:{effect.step}:{run.visits}:ask"
        asked = {"test": effect.test, "argument": effect.argument, "visit": run.visits}
        return request_id, {**base, **asked}
    fields = {k: v for k, v in vars(effect).items() if k not in ("step", "request_id")}
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    trigger = {k: run.trigger[k] for k in ("cart_id", "order_id") if run.trigger.get(k)}
    data = {**base, **fields, "about": trigger, "data": dict(run.trigger)}
    return effect.request_id, data


async def add_effects(
    conn: asyncpg.Connection, effects: Sequence[tuple[Run, Sequence[Effect]]]
) -> None:
    """Runs' effects to carry out, due at once (whatever instant each run's walk was at), in
    one round trip, in the order given."""
    args = []
    for run, those in effects:
        for effect in those:
            request_id, data = effect_data(effect, run)
            args.append((uuid.UUID(run.run_id), request_id, orjson.dumps(data).decode()))
    if args:
        await conn.executemany(
            f"""INSERT INTO {EFFECTS} (run_id, request_id, effect, due_at)
                VALUES ($1, $2, $3::jsonb, now()) ON CONFLICT (request_id) DO NOTHING""",
            args,
        )


async def zones_of(conn: asyncpg.Connection, contact_ids: Sequence[str]) -> dict[str, str]:
    """The time zones known for these contacts (a contact with none is left out)."""
    rows = await conn.fetch(
        "SELECT contact_id::text, time_zone FROM zones WHERE contact_id = ANY($1::uuid[])",
        list({uuid.UUID(c) for c in contact_ids}),
    )
    return {r[0]: r[1] for r in rows}


async def is_member(conn: asyncpg.Connection, segment_key: str, contact_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM members WHERE segment_key = $1 AND contact_id = $2",
            segment_key,
            uuid.UUID(contact_id),
        )
    )


async def set_member(
    conn: asyncpg.Connection, segment_key: str, contact_id: str, member: bool
) -> None:
    if member:
        await conn.execute(
            "INSERT INTO members VALUES ($1, $2) ON CONFLICT DO NOTHING",
            segment_key,
            uuid.UUID(contact_id),
        )
    else:
        await conn.execute(
            "DELETE FROM members WHERE segment_key = $1 AND contact_id = $2",
            segment_key,
            uuid.UUID(contact_id),
        )


async def zone_of(conn: asyncpg.Connection, contact_id: str) -> str:
    value = await conn.fetchval(
        "SELECT time_zone FROM zones WHERE contact_id = $1", uuid.UUID(contact_id)
    )
    return str(value or "")


async def set_zone(conn: asyncpg.Connection, contact_id: str, time_zone: str) -> None:
    await conn.execute(
        """INSERT INTO zones (contact_id, time_zone) VALUES ($1, $2)
            ON CONFLICT (contact_id) DO UPDATE SET time_zone = $2""",
        uuid.UUID(contact_id),
        time_zone,
    )


async def save_flow_event(conn: asyncpg.Connection, type_: str, data: Mapping[str, Any]) -> None:
    """A flow's own event: its versions and whether it is active."""
    fid = uuid.UUID(data["flow_id"])
    if type_ in (flows.CREATED, flows.REVISED):
        version = int(data.get("version", 1))
        await conn.execute(
            """INSERT INTO flow_versions (flow_id, version, definition)
                VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING""",
            fid,
            version,
            orjson.dumps(data["definition"]).decode(),
        )
        await conn.execute(
            """INSERT INTO flows (flow_id, state, latest_version)
                VALUES ($1, $2, $3)
                ON CONFLICT (flow_id) DO UPDATE SET latest_version = $3""",
            fid,
            flows.ACTIVE,
            version,
        )
        return
    state = {
        flows.PAUSED: flows.PAUSED_STATE,
        flows.RESUMED: flows.ACTIVE,
        flows.ARCHIVED: flows.ARCHIVED_STATE,
    }.get(type_)
    if state is not None:
        await conn.execute("UPDATE flows SET state = $2 WHERE flow_id = $1", fid, state)
