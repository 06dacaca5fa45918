"""The membership engine: one projection (one leader across replicas) that keeps the facts
tables and decides membership in the same transaction as its checkpoint.

Per page of events:

1. contacts' and orders' events update the facts (adapters/facts_writer.py);
2. segment events update the active segments; a new segment (BACKFILL) or a new rule version
   (RULE_CHANGED) evaluates every contact for it, an archived segment lets every member go;
3. the contacts whose facts changed are evaluated for the segments that read those facts
   (application/membership.py), and the resulting ContactEnteredSegment /
   ContactExitedSegment events are appended on the same connection, so facts, membership,
   timers and checkpoint commit together, exactly once;
4. readers are woken after the commit.

In replay (a rebuild) steps 2-4 write nothing: the facts are rebuilt, and the current
memberships are rebuilt from the membership events already in the log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.segmentation.adapters import rfm
from services.segmentation.adapters.bulk import evaluate_everyone
from services.segmentation.adapters.facts_tables import FACTS_DDL, load_facts
from services.segmentation.adapters.facts_writer import CATEGORIES, HANDLED, FactsWriter
from services.segmentation.adapters.membership_tables import (
    lock_contacts,
    set_members,
    write_timers,
)
from services.segmentation.application import membership as m
from services.segmentation.application.ports import ContactVersions
from services.segmentation.domain import segment as segments
from services.segmentation.domain.rules import FactGroup
from shared.eventstore import RecordedEvent, StreamAppend
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext

Clock = Callable[[], datetime]
APPEND_CHUNK = 1000  # streams per append statement
GROUPS = {g.value: g for g in FactGroup}
ALL_GROUPS = set(FactGroup)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _groups(names: set[str]) -> set[FactGroup]:
    if "merge" in names:
        return set(ALL_GROUPS)
    out = {GROUPS[n] for n in names if n in GROUPS}
    if FactGroup.ORDERS in out:
        out.add(FactGroup.PURCHASES)
    return out


class MembershipEngine:
    name = "segmentation-engine"
    schema = "segmentation_facts"
    ddl = FACTS_DDL
    categories: Sequence[str] | None = (*CATEGORIES, "segment", "segmentmembership", rfm.CATEGORY)
    types: Sequence[str] | None = (
        *HANDLED,
        rfm.RESCORE,
        segments.CREATED,
        segments.UPDATED,
        segments.ARCHIVED,
        m.ENTERED,
        m.EXITED,
    )
    # Its own membership events rebuild the current memberships in a rebuild; live, they are
    # written in the very transaction that decides them, and reading them back does nothing.
    # A rebuild stopping at the live checkpoint folds those beyond it too (rebuild.py).
    replay_only_types = (m.ENTERED, m.EXITED)

    def __init__(
        self, store: PostgresEventStore, contacts: ContactVersions, clock: Clock = utcnow
    ) -> None:
        self.store, self.facts, self.clock = store, FactsWriter(contacts), clock
        self._parsed: dict[tuple[str, int], m.ActiveSegment] = {}

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        """In log order: the upstream events before a segment event are applied (and their
        contacts decided) before it, so a backfill sees exactly the facts of its instant."""
        appends: list[StreamAppend] = []
        run: list[RecordedEvent] = []
        for e in events:
            if e.type in (segments.CREATED, segments.UPDATED, segments.ARCHIVED):
                appends += await self._upstream(conn, run, ctx)
                run = []
                appends += await self._segment_event(conn, e, ctx.replay)
            elif e.type == rfm.RESCORE:
                appends += await self._upstream(conn, run, ctx)
                run = []
                appends += await self._rescore(conn, e, ctx.replay)
            elif e.type in (m.ENTERED, m.EXITED):
                if ctx.replay:
                    key, cid = e.data["segment_key"], e.data["contact_id"]
                    await set_members(conn, [(key, cid, e.type == m.ENTERED)])
            else:
                run.append(e)
        appends += await self._upstream(conn, run, ctx)
        last = 0
        for i in range(0, len(appends), APPEND_CHUNK):  # a backfill's thousands of streams
            results = await self.store.append_batch_on(conn, appends[i : i + APPEND_CHUNK])
            last = max(last, *(r.position for r in results))
        if last:
            ctx.after_commit.append(lambda: self.store.committed(last))

    async def _upstream(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> list[StreamAppend]:
        """Contacts' and orders' events into the facts; the touched contacts decided. In
        replay only the timers are kept (a rebuilt engine must still fire them); the
        membership they lead to is in the log already, so firing writes nothing twice."""
        if not events:
            return []
        touched = await self.facts.apply(conn, events)
        asks = [
            Ask(cid, _groups(t.groups), m.EVENT, t.cause, t.cause.recorded_at)
            for cid, t in sorted(touched.items())
            if t.cause is not None
        ]
        return await self.evaluate(conn, asks, record=not ctx.replay)

    async def _rescore(
        self,
        conn: asyncpg.Connection,
        e: RecordedEvent,
        replay: bool,
        *,
        always: bool = False,
        besides: str = "",
    ) -> list[StreamAppend]:
        """RFM scored again when an active segment reads it (or ``always``: a rule about to
        read it); the contacts whose scores moved decided again for the segments reading it
        (``besides`` one), caused by ``e``."""
        active = await self.active(conn)
        reading = [s for s in active if FactGroup.RFM in s.groups and s.segment_id != besides]
        if not reading and not always:
            return []
        moved = await rfm.rescore(conn)
        if not reading:
            return []
        asks = [Ask(cid, {FactGroup.RFM}, m.EVENT, e, e.recorded_at) for cid in moved]
        others = [s for s in active if s.segment_id != besides]  # segments on RFM segments too
        return await self.evaluate(conn, asks, others, record=not replay)

    async def active(self, conn: asyncpg.Connection) -> list[m.ActiveSegment]:
        rows = await conn.fetch(
            "SELECT segment_id::text, key, rule, rule_version FROM segments WHERE NOT archived"
        )
        out = []
        for r in rows:
            key = (r["segment_id"], r["rule_version"])
            if key not in self._parsed:
                self._parsed[key] = m.ActiveSegment.of(
                    r["segment_id"], r["key"], r["rule_version"], r["rule"]
                )
            out.append(self._parsed[key])
        return m.in_dependency_order(out)

    async def evaluate(
        self,
        conn: asyncpg.Connection,
        asks: Sequence[Ask],
        only: Sequence[m.ActiveSegment] | None = None,
        *,
        record: bool = True,
    ) -> list[StreamAppend]:
        """Decide the membership of the contacts ``asks`` name (one lock statement, one load
        of their facts, batched writes of memberships and timers); return their events. Not
        ``record``: write the timers only. Asks naming one contact twice (two of its timers
        due at once) are decided in turn, each on what the one before decided."""
        if not asks:
            return []
        ids = sorted({a.contact_id for a in asks})
        await lock_contacts(conn, ids)
        facts = await load_facts(conn, ids)
        chosen = list(only) if only is not None else await self.active(conn)
        members: dict[tuple[str, str], bool] = {}
        timers: dict[tuple[str, str], datetime | None] = {}
        appends: list[StreamAppend] = []
        for a in asks:
            f = facts.get(a.contact_id)
            if f is None:
                continue
            decision = m.decide(f, chosen, a.changed, a.at or self.clock())
            timers.update(((sid, a.contact_id), due) for sid, due in decision.timers.items())
            if not decision.changes or not record:
                continue
            facts[a.contact_id] = decision.after
            ident = a.cause_id or (str(a.cause_event.event_id) if a.cause_event else "")
            meta = _meta(a.cause_event, a.cause)
            members.update(((c.segment.key, a.contact_id), c.entered) for c in decision.changes)
            appends += m.membership_appends(decision.changes, a.cause, ident, a.effective, meta)
        await set_members(conn, [(k, c, member) for (k, c), member in members.items()])
        await write_timers(conn, [(s, c, due) for (s, c), due in timers.items()])
        return appends

    async def _segment_event(
        self, conn: asyncpg.Connection, e: RecordedEvent, replay: bool
    ) -> list[StreamAppend]:
        d = e.data
        sid = uuid.UUID(d["segment_id"])
        before = await conn.fetchval("SELECT rule_version FROM segments WHERE segment_id = $1", sid)
        new_rule = e.type != segments.ARCHIVED and before != int(d["rule_version"])
        appends: list[StreamAppend] = []
        if new_rule and FactGroup.RFM in m.groups_of(d["rule"]):
            # Fresh scores for the new rule, the other segments reading them following
            # (before this one is active: its own entries are a backfill, not caused by this).
            appends += await self._rescore(conn, e, replay, always=True, besides=d["segment_id"])
        if e.type == segments.ARCHIVED:
            await conn.execute("UPDATE segments SET archived = true WHERE segment_id = $1", sid)
        else:
            await conn.execute(
                """INSERT INTO segments (segment_id, key, rule, rule_version)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (segment_id) DO UPDATE
                       SET rule = excluded.rule, rule_version = excluded.rule_version""",
                sid,
                d["key"],
                d["rule"],
                int(d["rule_version"]),
            )
        if replay or not (new_rule or e.type == segments.ARCHIVED):
            return appends  # a rebuild, or a new name: nobody's membership changes
        return appends + await self._bulk(conn, e)

    async def _bulk(self, conn: asyncpg.Connection, e: RecordedEvent) -> list[StreamAppend]:
        """Every contact evaluated for the segment ``e`` defines (or lets go of)."""
        d = e.data
        if e.type == segments.ARCHIVED:
            return await self._let_go(conn, e)
        cause = m.BACKFILL if e.type == segments.CREATED else m.RULE_CHANGED
        seg = m.ActiveSegment.of(d["segment_id"], d["key"], int(d["rule_version"]), d["rule"])
        return await evaluate_everyone(
            conn, seg, cause, str(e.event_id), e.recorded_at, _meta(e, cause)
        )

    async def _let_go(self, conn: asyncpg.Connection, e: RecordedEvent) -> list[StreamAppend]:
        """An archived segment: every member leaves it, and its timers go."""
        d = e.data
        rows = await conn.fetch(
            "DELETE FROM memberships WHERE segment_key = $1 RETURNING contact_id::text", d["key"]
        )
        await conn.execute("DELETE FROM timers WHERE segment_id = $1", uuid.UUID(d["segment_id"]))
        version = await conn.fetchval(
            "SELECT rule_version FROM segments WHERE segment_id = $1", uuid.UUID(d["segment_id"])
        )
        gone = m.SegmentRef(d["segment_id"], d["key"], int(version or 0))
        changes = [m.Change(r[0], gone, False) for r in sorted(rows)]
        meta = _meta(e, m.RULE_CHANGED)
        return m.membership_appends(changes, m.RULE_CHANGED, str(e.event_id), e.recorded_at, meta)


@dataclass(frozen=True)
class Ask:
    """A contact whose membership is to be decided, and why."""

    contact_id: str
    changed: set[FactGroup] | None  # the fact groups that moved (None: every segment)
    cause: str
    cause_event: RecordedEvent | None
    effective: datetime  # the instant the membership changes
    cause_id: str = ""  # when there is no cause event (a timer)
    at: datetime | None = None  # evaluate at this instant (default: now)


def _meta(cause_event: RecordedEvent | None, cause: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"schema": 1, "actor": "segmentation-engine"}
    if cause_event is not None:
        meta["causation_id"] = str(cause_event.event_id)
        meta["correlation_id"] = str(
            cause_event.metadata.get("correlation_id") or cause_event.event_id
        )
    if cause == m.BACKFILL:
        meta["backfill"] = True
    return meta
