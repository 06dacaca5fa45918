"""RFM re-scoring: every customer's recency, frequency and monetary scores per currency from
the facts tables, as shared/domain/rfm.py defines them (the orders service scores the same
way), into ``rfm_scores``.

A score ranks a customer against all others, so another customer's order moves it. Scores are
therefore not kept per event: the engine re-scores everyone when it reaches an
``RfmRescoreScheduled`` event in the log (``RfmRescoreScheduler`` appends one per slot) and
before a segment whose rule reads RFM is (re)evaluated. Both happen at a fixed place in the log,
so a rebuild computes the very same scores. ``rescore`` returns the contacts whose scores
changed, for the engine to decide again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.domain import rfm
from shared.domain.timestamps import timestamp_text
from shared.eventstore import NewEvent, StreamState, WrongExpectedVersion
from shared.eventstore.postgres import PostgresEventStore
from shared.supervision import sleep_unless_stopped

RESCORE = "crm.segmentation.v1.RfmRescoreScheduled"
CATEGORY = "rfmrescore"
NS = uuid.UUID("3f0d7c2e-9b14-4c55-8e61-5a2b7d90c4e1")  # never change: ids would repeat

# The new scores (rank() - 1 customers are strictly worse), the difference with the old ones
# written, and the contacts whose scores changed returned.
_RESCORE = """
WITH measures AS (
    SELECT contact_id, currency, max(place_time) AS last, count(*) AS n,
           sum(total - refunded) AS money
    FROM orders WHERE NOT cancelled GROUP BY contact_id, currency),
scored AS (
    SELECT contact_id, currency,
           1 + 5 * (rank() OVER (PARTITION BY currency ORDER BY last) - 1)
               / count(*) OVER (PARTITION BY currency) AS recency,
           1 + 5 * (rank() OVER (PARTITION BY currency ORDER BY n) - 1)
               / count(*) OVER (PARTITION BY currency) AS frequency,
           1 + 5 * (rank() OVER (PARTITION BY currency ORDER BY money) - 1)
               / count(*) OVER (PARTITION BY currency) AS monetary
    FROM measures),
fresh AS (
    SELECT s.contact_id, s.currency, s.recency, s.frequency, s.monetary, g.name AS grp
    FROM scored s JOIN unnest($1::int[], $2::int[], $3::text[]) AS g (r, f, name)
        ON g.r = s.recency AND g.f = s.frequency),
gone AS (
    DELETE FROM rfm_scores o WHERE NOT EXISTS (
        SELECT 1 FROM fresh f WHERE f.contact_id = o.contact_id AND f.currency = o.currency)
    RETURNING o.contact_id),
moved AS (
    INSERT INTO rfm_scores AS o SELECT * FROM fresh
    ON CONFLICT (contact_id, currency) DO UPDATE SET
        recency = excluded.recency, frequency = excluded.frequency,
        monetary = excluded.monetary, grp = excluded.grp
    WHERE (o.recency, o.frequency, o.monetary, o.grp)
        IS DISTINCT FROM (excluded.recency, excluded.frequency, excluded.monetary, excluded.grp)
    RETURNING o.contact_id)
SELECT DISTINCT contact_id::text FROM (SELECT * FROM gone UNION ALL SELECT * FROM moved) AS c
"""


async def rescore(conn: asyncpg.Connection) -> list[str]:
    """Score every customer again; the contacts whose scores changed, in id order."""
    grid = rfm.grid()
    rows = await conn.fetch(
        _RESCORE, [g[0] for g in grid], [g[1] for g in grid], [g[2] for g in grid]
    )
    return sorted(r[0] for r in rows)


class RfmRescoreScheduler:
    """Appends one ``RfmRescoreScheduled`` per slot of ``every`` (the slots are fixed instants:
    multiples of ``every`` since the epoch). The stream of a slot is new, and the event's id
    derives from the slot: however many replicas run this, each slot is scheduled once."""

    def __init__(
        self,
        store: PostgresEventStore,
        every: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.every, self.clock = store, every, clock

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick()
            left = self.every - (self.clock() - self.slot_start(self.clock()))
            await sleep_unless_stopped(stop, max(left.total_seconds(), 0.05))

    def slot_start(self, at: datetime) -> datetime:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return epoch + self.every * ((at - epoch) // self.every)

    async def tick(self) -> bool:
        """Schedule the current slot; False if it was scheduled already."""
        start = self.slot_start(self.clock())
        slot = timestamp_text(start)
        event = NewEvent(
            RESCORE,
            {"scheduled_time": slot},
            {"schema": 1, "actor": "rfm-rescore-scheduler"},
            uuid.uuid5(NS, slot),
        )
        try:
            result = await self.store.append(
                f"{CATEGORY}-{int(start.timestamp())}", [event], StreamState.NO_STREAM
            )
        except WrongExpectedVersion:
            return False
        return not result.idempotent
