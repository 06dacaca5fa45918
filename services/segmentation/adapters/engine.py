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
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.segmentation.adapters.bulk import evaluate_everyone
from services.segmentation.adapters.facts_tables import FACTS_DDL, load_facts
from services.segmentation.adapters.facts_writer import CATEGORIES, FactsWriter
from services.segmentation.application import membership as m
from services.segmentation.application.ports import ContactVersions
from services.segmentation.domain import segment as segments
from services.segmentation.domain.rules import FactGroup
from shared.eventstore import NewEvent, RecordedEvent, StreamAppend, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.projections.model import ApplyContext

Clock = Callable[[], datetime]
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
    categories: Sequence[str] | None = (*CATEGORIES, "segment", "segmentmembership")
    types: Sequence[str] | None = None

    def __init__(
        self, store: PostgresEventStore, contacts: ContactVersions, clock: Clock = utcnow
    ) -> None:
        self.store, self.facts, self.clock = store, FactsWriter(contacts), clock
        self._parsed: dict[tuple[str, int], m.ActiveSegment] = {}

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        upstream = [e for e in events if e.stream.split("-", 1)[0] in CATEGORIES]
        touched = await self.facts.apply(conn, upstream)
        appends: list[StreamAppend] = []
        for e in events:
            if e.type in (segments.CREATED, segments.UPDATED, segments.ARCHIVED):
                appends += await self._segment_event(conn, e, ctx.replay)
            elif e.type in (m.ENTERED, m.EXITED) and ctx.replay:
                await set_member(
                    conn, e.data["segment_key"], e.data["contact_id"], e.type == m.ENTERED
                )
        if not ctx.replay and touched:
            for cid, t in sorted(touched.items()):
                assert t.cause is not None
                appends += await self.evaluate(
                    conn, cid, _groups(t.groups), m.EVENT, t.cause, t.cause.recorded_at
                )
        if appends:
            results = await self.store.append_batch_on(conn, appends)
            last = max(r.position for r in results)
            ctx.after_commit.append(lambda: self.store.committed(last))

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
        contact_id: str,
        changed: set[FactGroup] | None,
        cause: str,
        cause_event: RecordedEvent | None,
        effective: datetime,
        only: Sequence[m.ActiveSegment] | None = None,
        cause_id: str = "",
        at: datetime | None = None,
    ) -> list[StreamAppend]:
        """Decide one contact's membership at ``at`` (now); write memberships and timers;
        return its events."""
        await lock_contact(conn, contact_id)
        facts = (await load_facts(conn, [contact_id])).get(contact_id)
        if facts is None:
            return []
        chosen = list(only) if only is not None else await self.active(conn)
        decision = m.decide(facts, chosen, changed, at or self.clock())
        await write_timers(conn, contact_id, decision.timers)
        if not decision.changes:
            return []
        ident = cause_id or (str(cause_event.event_id) if cause_event is not None else "")
        meta = _meta(cause_event, cause)
        events: list[NewEvent] = []
        for change in decision.changes:
            await set_member(conn, change.segment.key, contact_id, change.entered)
            events.append(m.membership_event(change, cause, ident, effective, meta))
        return [StreamAppend(m.stream_of(contact_id), events, StreamState.ANY)]

    async def _segment_event(
        self, conn: asyncpg.Connection, e: RecordedEvent, replay: bool
    ) -> list[StreamAppend]:
        d = e.data
        sid = uuid.UUID(d["segment_id"])
        before = await conn.fetchval("SELECT rule_version FROM segments WHERE segment_id = $1", sid)
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
        if replay or (e.type == segments.UPDATED and before == int(d["rule_version"])):
            return []  # a rebuild, or a new name: nobody's membership changes
        return await self._bulk(conn, e)

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
        meta = _meta(e, m.RULE_CHANGED)
        return [
            StreamAppend(
                m.stream_of(r[0]),
                [
                    m.membership_event(
                        m.Change(r[0], gone, False),
                        m.RULE_CHANGED,
                        str(e.event_id),
                        e.recorded_at,
                        meta,
                    )
                ],
                StreamState.ANY,
            )
            for r in sorted(rows)
        ]


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


async def lock_contact(conn: asyncpg.Connection, contact_id: str) -> None:
    """Serialise membership decisions of one contact (the engine and the timers)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('segmentation:' || $1))", contact_id)


async def set_member(conn: asyncpg.Connection, key: str, contact_id: str, member: bool) -> None:
    if member:
        await conn.execute(
            "INSERT INTO memberships (segment_key, contact_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            key,
            uuid.UUID(contact_id),
        )
    else:
        await conn.execute(
            "DELETE FROM memberships WHERE segment_key = $1 AND contact_id = $2",
            key,
            uuid.UUID(contact_id),
        )


async def write_timers(
    conn: asyncpg.Connection, contact_id: str, timers: dict[str, datetime | None]
) -> None:
    cid = uuid.UUID(contact_id)
    for sid, due in timers.items():
        if due is None:
            await conn.execute(
                "DELETE FROM timers WHERE segment_id = $1 AND contact_id = $2", uuid.UUID(sid), cid
            )
        else:
            await conn.execute(
                """INSERT INTO timers (segment_id, contact_id, due_at) VALUES ($1, $2, $3)
                   ON CONFLICT (segment_id, contact_id) DO UPDATE SET due_at = excluded.due_at""",
                uuid.UUID(sid),
                cid,
                due,
            )
