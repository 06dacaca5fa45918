"""The pipeline's tables on PostgreSQL (migrations/0001_pipeline.sql), each write in the event
store's own transaction (its unit of work), so an event and its rows commit together."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from services.notifications.adapters.intake_tables import remember_provider_id
from services.notifications.adapters.tracking_tables import record_links
from services.notifications.application.ports import Deferred, Queued, Settlement
from services.notifications.domain.links import Link
from shared.eventstore import EventStore, StreamAppend

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "notifications_pipeline"


def _uuid(value: str) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


def _queued(r: asyncpg.Record) -> Queued:
    return Queued(
        message_id=str(r["message_id"]),
        contact_id=str(r["contact_id"] or ""),
        channel=r["channel"],
        address=r["address"],
        due_at=r["due_at"],
        sender=r["sender"],
        subject=r["subject"],
        text=r["text"],
        html=r["html"],
        body=r["body"],
        headers=tuple((str(n), str(v)) for n, v in orjson.loads(r["headers"])),
        test=r["test"],
        attempt=r["attempt"],
        in_flight=r["in_flight"],
    )


def _deferred(r: asyncpg.Record) -> Deferred:
    return Deferred(
        message_id=str(r["message_id"]),
        decision=r["decision"],
        due_at=r["due_at"],
        requested_contact_id=str(r["requested_contact_id"]),
        template_id=str(r["template_id"]),
        template_version=r["template_version"],
        kind=r["kind"],
        locale=r["locale"],
        webhook_url=r["webhook_url"],
        request_id=r["request_id"],
        data=orjson.loads(r["data"]),
        cart_id=r["cart_id"],
        order_id=r["order_id"],
    )


def _enqueued(row: Queued, marketing_send_at: datetime | None) -> tuple[Any, ...]:
    return (
        uuid.UUID(row.message_id),
        _uuid(row.contact_id),
        row.channel,
        row.address,
        row.sender,
        row.subject,
        row.text,
        row.html,
        row.body,
        orjson.dumps([list(h) for h in row.headers]).decode(),
        row.test,
        row.due_at,
        marketing_send_at,
    )


class PostgresDeciding:
    """One decision's transaction (application/ports.py)."""

    def __init__(self, uow: object, conn: asyncpg.Connection) -> None:
        self.uow, self.conn = uow, conn

    async def marketing_sends(
        self, keys: Sequence[tuple[str, str]], since: datetime
    ) -> dict[tuple[str, str], tuple[int, datetime | None]]:
        if not keys:
            return {}
        rows = await self.conn.fetch(
            f"""SELECT k.contact_id, k.channel, count(*) FILTER (WHERE m.sent_at > $3) AS n,
                    max(m.sent_at) AS last
                FROM unnest($1::uuid[], $2::text[]) AS k(contact_id, channel)
                JOIN {SCHEMA}.marketing_sends m
                  ON m.contact_id = k.contact_id AND m.channel = k.channel
                GROUP BY 1, 2""",
            [uuid.UUID(c) for c, _ in keys],
            [channel for _, channel in keys],
            since,
        )
        return {(str(r["contact_id"]), r["channel"]): (int(r["n"]), r["last"]) for r in rows}

    async def append(self, appends: Sequence[StreamAppend]) -> None:
        await self.uow.append_multi(list(appends))  # type: ignore[attr-defined]

    async def enqueue(self, rows: Sequence[tuple[Queued, datetime | None]]) -> None:
        """One statement (one round trip for a whole batch): the outbox rows, their
        recipients, and for marketing the marketing sends."""
        if not rows:
            return
        columns = list(zip(*((_enqueued(q, at)) for q, at in rows), strict=True))
        await self.conn.execute(
            f"""WITH r AS (
                    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],
                        $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                        $11::bool[], $12::timestamptz[], $13::timestamptz[])
                    AS r(message_id, contact_id, channel, address, sender, subject, text, html,
                        body, headers, test, due_at, send_at)),
                outbox AS (
                    INSERT INTO {SCHEMA}.outbox (message_id, contact_id, channel, address, sender,
                        subject, text, html, body, headers, test, due_at)
                    SELECT message_id, contact_id, channel, address, sender, subject, text, html,
                        body, headers::jsonb, test, due_at FROM r),
                recipient AS (
                    INSERT INTO {SCHEMA}.recipients SELECT message_id, contact_id, address FROM r
                    ON CONFLICT (message_id) DO UPDATE SET address = excluded.address)
                INSERT INTO {SCHEMA}.marketing_sends
                SELECT contact_id, channel, message_id, send_at FROM r WHERE send_at IS NOT NULL""",
            *columns,
        )

    async def record_links(self, links: Sequence[tuple[str, str, Link]]) -> None:
        await record_links(self.conn, links)

    async def defer(self, t: Deferred) -> None:
        await self.conn.execute(
            f"""INSERT INTO {SCHEMA}.timers (message_id, decision, due_at, requested_contact_id,
                    template_id, template_version, kind, locale, webhook_url, request_id, data,
                    cart_id, order_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13)""",
            uuid.UUID(t.message_id),
            t.decision,
            t.due_at,
            uuid.UUID(t.requested_contact_id),
            uuid.UUID(t.template_id),
            t.template_version,
            t.kind,
            t.locale,
            t.webhook_url,
            t.request_id,
            orjson.dumps(dict(t.data)).decode(),
            t.cart_id,
            t.order_id,
        )

    async def fired(self, message_id: str) -> None:
        await self.conn.execute(
            f"DELETE FROM {SCHEMA}.timers WHERE message_id = $1", uuid.UUID(message_id)
        )


class PostgresPipelineTables:
    def __init__(self, store: EventStore, pool: asyncpg.Pool) -> None:
        self.store, self.pool = store, pool

    @asynccontextmanager
    async def deciding(self, contact_ids: Sequence[str]) -> AsyncIterator[PostgresDeciding]:
        async with self.store.transaction() as uow:
            conn = uow.connection
            if conn is None:
                raise RuntimeError("the message pipeline needs the PostgreSQL event store")
            if ids := sorted({c for c in contact_ids if c}):
                # One decision at a time per contact, until the commit; the locks taken in
                # one order (their keys sorted, one statement) so two batches sharing
                # contacts never deadlock.
                await conn.execute(
                    """SELECT pg_advisory_xact_lock(k) FROM (
                           SELECT DISTINCT hashtext('notifications-contact:' || c) AS k
                           FROM unnest($1::text[]) AS c ORDER BY k) AS keys""",
                    ids,
                )
            yield PostgresDeciding(uow, conn)

    async def due_timers(self, now: datetime, limit: int) -> list[Deferred]:
        rows = await self.pool.fetch(
            f"SELECT * FROM {SCHEMA}.timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
            now,
            limit,
        )
        return [_deferred(r) for r in rows]

    async def due_outbox(self, now: datetime, limit: int) -> list[Queued]:
        rows = await self.pool.fetch(
            f"SELECT * FROM {SCHEMA}.outbox WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
            now,
            limit,
        )
        return [_queued(r) for r in rows]

    async def dispatch(
        self, appends: Sequence[StreamAppend], rows: Sequence[Queued], lease_until: datetime
    ) -> None:
        async with self.store.transaction() as uow:
            await uow.append_multi(list(appends))
            await uow.connection.executemany(
                f"""UPDATE {SCHEMA}.outbox SET attempt = $2, in_flight = true, due_at = $3
                    WHERE message_id = $1""",
                [(uuid.UUID(r.message_id), r.attempt + 1, lease_until) for r in rows],
            )

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        if not settlements:
            return
        retired = [uuid.UUID(s.message_id) for s in settlements if s.retry_at is None]
        again = [(uuid.UUID(s.message_id), s.retry_at) for s in settlements if s.retry_at]
        async with self.store.transaction() as uow:
            await uow.append_multi([s.append for s in settlements])
            for s in settlements:
                if s.provider_id:  # the gateway's id, for its status callbacks (the intake)
                    await remember_provider_id(
                        uow.connection, s.provider_id, s.message_id, s.contact_id
                    )
            if retired:
                await uow.connection.execute(
                    f"DELETE FROM {SCHEMA}.outbox WHERE message_id = ANY($1::uuid[])", retired
                )
            if again:
                await uow.connection.executemany(
                    f"""UPDATE {SCHEMA}.outbox SET in_flight = false, due_at = $2
                        WHERE message_id = $1""",
                    again,
                )

    async def recipient(self, message_id: str) -> str:
        return str(
            await self.pool.fetchval(
                f"SELECT address FROM {SCHEMA}.recipients WHERE message_id = $1",
                uuid.UUID(message_id),
            )
            or ""
        )
