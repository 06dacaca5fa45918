"""Projection lag measured from the outside: the committed checkpoint (the checkpoints table,
not a runner's memory) against the store's log. A runner that died, hangs or stands by without
a leader anywhere therefore shows as lag that grows with the age of the oldest event it has not
committed, whatever the runner itself believes. Parked events are counted the same way, from
projections.parked: every replica reports them, and they stay counted after a restart until an
operator resolves them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from shared.eventstore import EventStore
from shared.metrics import (
    PARKED_EVENTS,
    PROJECTION_LAG_EVENTS,
    PROJECTION_LAG_SECONDS,
    PROJECTION_POSITION,
)
from shared.projections.model import Projection


async def update_lag(
    pool: asyncpg.Pool, store: EventStore, projections: Sequence[Projection]
) -> None:
    """Set crm_projection_position / _lag_events / _lag_seconds and crm_parked_events for each
    projection."""
    names = [p.name for p in projections]
    rows = await pool.fetch(
        "SELECT name, position FROM projections.checkpoints WHERE name = ANY($1::text[])", names
    )
    committed = {r["name"]: int(r["position"]) for r in rows}
    rows = await pool.fetch(
        """SELECT name, count(*) AS parked FROM projections.parked
           WHERE name = ANY($1::text[]) GROUP BY name""",
        names,
    )
    parked = {r["name"]: int(r["parked"]) for r in rows}
    for p in projections:
        position = committed.get(p.name, 0)
        backlog = await store.backlog(position, categories=p.categories, types=p.types)
        age = 0.0
        if backlog.oldest is not None:
            age = max(0.0, (datetime.now(UTC) - backlog.oldest).total_seconds())
        PROJECTION_POSITION.labels(p.name).set(position)
        PROJECTION_LAG_EVENTS.labels(p.name).set(backlog.count)
        PROJECTION_LAG_SECONDS.labels(p.name).set(age)
        PARKED_EVENTS.labels(p.name).set(parked.get(p.name, 0))
