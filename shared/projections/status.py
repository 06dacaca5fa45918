"""What a projection is doing, measured from the outside (docs/architecture.md §4): its
committed checkpoint against the store's log, who holds its leader lock (pg_locks, with the
host and pid the leader recorded), its parked events and its latest rebuild. The lag metrics
(lag.py) and the Admin API's ListProjections (shared/admin/) both read it, so they never
disagree."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from shared.eventstore import EventStore
from shared.projections.leaders import LEAD, REBUILD, Holder, holders
from shared.projections.model import Projection, replay_only
from shared.projections.reactor import Reactor

REBUILD_COLUMNS = """operation_id, name, state, phase, requested_by, host, pid, resumed_from,
    position, target, applied, error, started_at, finished_at"""


def kind(projection: Projection) -> str:
    """ "reactor" (events in, events out; nothing to rebuild), "engine" (a read model that also
    appends events) or "read_model"."""
    if isinstance(projection, Reactor):
        return "reactor"
    return "engine" if replay_only(projection) else "read_model"


@dataclass(frozen=True)
class RebuildRecord:
    """One attempt at a side-by-side rebuild (projections.rebuilds)."""

    operation_id: uuid.UUID
    name: str
    state: str  # running, done, failed, interrupted (not switched, and nobody holds the lock)
    phase: str
    requested_by: str
    host: str
    pid: int
    resumed_from: int
    position: int
    target: int
    applied: int
    error: str
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: asyncpg.Record, running: bool) -> RebuildRecord:
        fields = dict(row)
        if fields["state"] == "running" and not running:
            # Nobody holds its lock. Switched already (phase done): it is done, its process
            # just had not recorded so yet (or died right after). Before that: its process
            # died, and asking again resumes it.
            fields["state"] = "done" if fields["phase"] == "done" else "interrupted"
        return cls(**fields)


@dataclass(frozen=True)
class Status:
    name: str
    schema: str
    kind: str
    checkpoint: int  # committed position (0: nothing yet)
    updated_at: datetime | None  # when the checkpoint last moved
    lag_events: int  # matching events after the checkpoint (counted up to a cap)
    lag_seconds: float  # age of the oldest of them; 0 when caught up
    leader: Holder | None  # None: no session leads it, so its lag grows
    parked: int  # unresolved parked events
    rebuild: RebuildRecord | None  # the latest rebuild, if any


async def statuses(
    pool: asyncpg.Pool, store: EventStore, projections: Sequence[Projection]
) -> list[Status]:
    names = [p.name for p in projections]
    rows = await pool.fetch(
        """SELECT name, position, updated_at FROM projections.checkpoints
           WHERE name = ANY($1::text[])""",
        names,
    )
    committed = {r["name"]: (int(r["position"]), r["updated_at"]) for r in rows}
    rows = await pool.fetch(
        """SELECT name, count(*) AS parked FROM projections.parked
           WHERE name = ANY($1::text[]) AND resolved_at IS NULL GROUP BY name""",
        names,
    )
    parked = {r["name"]: int(r["parked"]) for r in rows}
    leaders = await holders(pool, LEAD, names)
    rebuilds = await latest_rebuilds(pool, names)
    out = []
    now = datetime.now(UTC)
    for p in projections:
        position, updated_at = committed.get(p.name, (0, None))
        backlog = await store.backlog(position, categories=p.categories, types=p.types)
        age = 0.0 if backlog.oldest is None else max(0.0, (now - backlog.oldest).total_seconds())
        out.append(
            Status(
                p.name,
                p.schema,
                kind(p),
                position,
                updated_at,
                backlog.count,
                age,
                leaders.get(p.name),
                parked.get(p.name, 0),
                rebuilds.get(p.name),
            )
        )
    return out


async def latest_rebuilds(
    pool: asyncpg.Pool | asyncpg.Connection, names: Sequence[str]
) -> dict[str, RebuildRecord]:
    rows = await pool.fetch(
        f"""SELECT DISTINCT ON (name) {REBUILD_COLUMNS} FROM projections.rebuilds
            WHERE name = ANY($1::text[]) ORDER BY name, started_at DESC""",
        list(names),
    )
    running = await holders(pool, REBUILD, [r["name"] for r in rows])
    return {r["name"]: RebuildRecord.of(r, r["name"] in running) for r in rows}


async def rebuild_record(
    pool: asyncpg.Pool | asyncpg.Connection, operation_id: uuid.UUID
) -> RebuildRecord | None:
    row = await pool.fetchrow(
        f"SELECT {REBUILD_COLUMNS} FROM projections.rebuilds WHERE operation_id = $1",
        operation_id,
    )
    if row is None:
        return None
    running = await holders(pool, REBUILD, [row["name"]])
    return RebuildRecord.of(row, row["name"] in running)
