"""Projection lag measured from the outside: the committed checkpoint (the checkpoints table,
not a runner's memory) against the store's log (status.py). A runner that died, hangs or stands
by without a leader anywhere therefore shows as lag that grows with the age of the oldest event
it has not committed, whatever the runner itself believes. Parked events are counted the same
way, from projections.parked: every replica reports them, and they stay counted after a restart
until an operator resolves them (`crm parked retry|skip`)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.eventstore import EventStore
from shared.metrics import (
    PARKED_EVENTS,
    PROJECTION_LAG_EVENTS,
    PROJECTION_LAG_SECONDS,
    PROJECTION_POSITION,
)
from shared.projections.model import Projection
from shared.projections.status import statuses


async def update_lag(
    pool: asyncpg.Pool, store: EventStore, projections: Sequence[Projection]
) -> None:
    """Set crm_projection_position / _lag_events / _lag_seconds and crm_parked_events for each
    projection."""
    for s in await statuses(pool, store, projections):
        PROJECTION_POSITION.labels(s.name).set(s.checkpoint)
        PROJECTION_LAG_EVENTS.labels(s.name).set(s.lag_events)
        PROJECTION_LAG_SECONDS.labels(s.name).set(s.lag_seconds)
        PARKED_EVENTS.labels(s.name).set(s.parked)
