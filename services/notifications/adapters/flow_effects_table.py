"""The flow effects outbox (notifications_pipeline.flow_effects, a migration's table) as the
one effects worker reads and updates it (application/flow_effects.py), and the answer to a
rule ask: the run goes on from the condition's branch in the transaction that deletes the ask.

The answer is written as the timers write a due timer (adapters/flow_timers.py): the run's row
locked, its events appended at the version the row holds with ids derived from the ask (its
request id names the run, the step and the visit), so an answer done again writes nothing
twice; the row and the new effects saved with them. Only this worker writes answers, from the
outbox, which a rebuild never fills: a replay answers nothing."""

from __future__ import annotations

from datetime import datetime

import orjson

from services.notifications.adapters import flow_run_tables as t
from services.notifications.adapters.flow_batch import Definitions
from services.notifications.adapters.flow_engine import RunWriter, zone
from services.notifications.adapters.flow_run_tables import EFFECTS
from services.notifications.application.flow_effects import DueEffect
from services.notifications.domain.flows import flow as flows
from services.notifications.domain.flows import run as runs
from shared.eventstore import WrongExpectedVersion
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.errors import Unavailable

ACTOR = "notifications-flow-effects"


class PostgresEffects:
    """The effects outbox, for the one worker that carries them out (application/
    flow_effects.py)."""

    def __init__(self, store: PostgresEventStore, definitions: Definitions | None = None) -> None:
        self.store, self.pool = store, store.pool
        self.definitions = definitions or Definitions()
        self.writer = RunWriter(store)

    async def due(self, now: datetime, limit: int) -> list[DueEffect]:
        rows = await self.pool.fetch(
            f"""SELECT id, request_id, effect, attempts FROM {EFFECTS}
                WHERE error = '' AND due_at <= $1 ORDER BY id LIMIT $2""",
            now,
            limit,
        )
        return [DueEffect(r[0], r[1], orjson.loads(r[2]), r[3]) for r in rows]

    async def done(self, effect_id: int) -> None:
        await self.pool.execute(f"DELETE FROM {EFFECTS} WHERE id = $1", effect_id)

    async def later(self, effect_id: int, due_at: datetime) -> None:
        await self.pool.execute(
            f"UPDATE {EFFECTS} SET due_at = $2, attempts = attempts + 1 WHERE id = $1",
            effect_id,
            due_at,
        )

    async def refused(self, effect_id: int, reason: str) -> None:
        await self.pool.execute(
            f"UPDATE {EFFECTS} SET error = $2 WHERE id = $1", effect_id, reason[:500]
        )

    async def answer(self, due: DueEffect, holds: bool, now: datetime) -> bool:
        """The rule ask's run goes on from the branch ``holds`` names, at ``now`` (a delay
        after it counts from the answer), and the ask is deleted, in one transaction. A run
        that has moved on since it asked (ended by an exit event, its flow archived) takes no
        step: the ask is only deleted. False, with nothing written, while its flow is paused."""
        try:
            return await self._answer(due, holds, now)
        except WrongExpectedVersion:
            raise Unavailable(
                "FLOW_RUN_BUSY", "the run changed as it was answered; answered again later"
            ) from None

    async def _answer(self, due: DueEffect, holds: bool, now: datetime) -> bool:
        e, last = due.effect, 0
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {t.SCHEMA}, public")
            found = await conn.fetchrow(
                "SELECT * FROM runs WHERE run_id = $1::uuid FOR UPDATE", e["run_id"]
            )
            row = t.run_of(found) if found is not None else None
            if row is not None and row.run.visits == int(e.get("visit", row.run.visits)):
                r = row.run
                state = await conn.fetchval(
                    "SELECT state FROM flows WHERE flow_id = $1::uuid", r.flow_id
                )
                if state == flows.PAUSED_STATE:
                    return False
                flow = await self.definitions.get(conn, r.flow_id, r.flow_version)
                tz = zone(await t.zone_of(conn, r.contact_id))
                walked = runs.answered(r, flow, str(e["step"]), holds, now, tz)
                if walked[0]:
                    trigger_event = str(r.trigger.get("event_id", ""))
                    meta = {
                        "schema": 1,
                        "actor": ACTOR,
                        "request_id": due.request_id,
                        "causation_id": trigger_event,
                        "correlation_id": trigger_event,
                    }
                    key = f"{ACTOR}:{due.request_id}"
                    last = await self.writer.write(conn, row, walked, flow, tz, key, meta, now)
            await conn.execute(f"DELETE FROM {EFFECTS} WHERE id = $1", due.id)
        if last:
            self.store.committed(last)
        return True
