"""notifications_messages_rm: one row per message (its status, decisions and delivery steps,
as domain/trail.py folds them), from notifications' own message events; and its reads. A
projection only: it writes no outbox row and no timer, so a rebuild sends and schedules
nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from services.notifications.domain import decision as d
from services.notifications.domain import tracking, trail
from shared.domain import paging
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

SCHEMA = "notifications_messages_rm"
DDL = """
CREATE TABLE messages (
    message_id  uuid        PRIMARY KEY,
    contact_id  uuid,
    channel     text        NOT NULL,
    kind        text        NOT NULL,
    status      text        NOT NULL,
    test        boolean     NOT NULL,
    decisions   jsonb       NOT NULL,
    delivery    jsonb       NOT NULL DEFAULT '[]',
    version     bigint      NOT NULL,
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL
);
CREATE INDEX messages_by_contact ON messages (contact_id, create_time DESC, message_id DESC);
"""


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


class MessagesProjection:
    name = "notifications-messages"
    schema = SCHEMA
    ddl = DDL
    categories: Sequence[str] | None = ("message",)
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        for e in events:
            data = e.data
            if e.type in tracking.EVENTS:  # a step of the trail; the status stays
                step = {"time": e.recorded_at.isoformat(), "type": e.type, "data": data}
                await conn.execute(
                    """UPDATE messages SET delivery = delivery || $2::jsonb, version = $3,
                           update_time = $4
                       WHERE message_id = $1 AND version < $3""",
                    uuid.UUID(data["message_id"]),
                    _json([step]),
                    e.version,
                    e.recorded_at,
                )
            if e.type not in (d.DECIDED, *d.DELIVERY):
                continue
            mid = uuid.UUID(data["message_id"])
            status = d.status_after(e.type, data)
            if e.type == d.DECIDED and e.version == 0:
                contact = data.get("contact_id", "")
                await conn.execute(
                    """INSERT INTO messages (message_id, contact_id, channel, kind, status, test,
                           decisions, version, create_time, update_time)
                       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $9)
                       ON CONFLICT (message_id) DO NOTHING""",
                    mid,
                    uuid.UUID(contact) if contact else None,
                    data.get("channel", ""),
                    data.get("kind", ""),
                    status,
                    bool(data.get("test", False)),
                    _json([data]),
                    e.version,
                    e.recorded_at,
                )
            elif e.type == d.DECIDED:
                await conn.execute(
                    """UPDATE messages SET status = $2, decisions = decisions || $3::jsonb,
                           version = $4, update_time = $5
                       WHERE message_id = $1 AND version < $4""",
                    mid,
                    status,
                    _json([data]),
                    e.version,
                    e.recorded_at,
                )
            else:
                step = {"time": e.recorded_at.isoformat(), "type": e.type, "data": data}
                await conn.execute(
                    """UPDATE messages SET status = $2, delivery = delivery || $3::jsonb,
                           version = $4, update_time = $5
                       WHERE message_id = $1 AND version < $4""",
                    mid,
                    status,
                    _json([step]),
                    e.version,
                    e.recorded_at,
                )


def _trail(r: asyncpg.Record) -> trail.Trail:
    steps = [
        (datetime.fromisoformat(s["time"]), s["type"], s["data"])
        for s in orjson.loads(r["delivery"])
    ]
    return trail.Trail(
        message_id=str(r["message_id"]),
        contact_id=str(r["contact_id"] or ""),
        channel=r["channel"],
        kind=r["kind"],
        status=r["status"],
        test=r["test"],
        decisions=tuple(orjson.loads(r["decisions"])),
        delivery=tuple(steps),
        version=r["version"],
        create_time=r["create_time"],
        update_time=r["update_time"],
    )


class MessageQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, message_id: str) -> trail.Trail | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {SCHEMA}.messages WHERE message_id = $1", uuid.UUID(message_id)
        )
        return _trail(row) if row is not None else None

    async def page(
        self, contact_id: str, channel: str, kind: str, status: str, size: int, token: str
    ) -> tuple[list[trail.Trail], str]:
        """Newest first; keyset pages on (create_time, message_id)."""
        query = f"messages|{contact_id}|{channel}|{kind}|{status}"
        after = paging.decode_token(token, query) if token else ""
        at, _, mid = after.partition("|")
        rows = await self.pool.fetch(
            f"""SELECT * FROM {SCHEMA}.messages
                WHERE contact_id = $1 AND ($2 = '' OR channel = $2) AND ($3 = '' OR kind = $3)
                  AND ($4 = '' OR status = $4)
                  AND ($5::timestamptz IS NULL OR (create_time, message_id) < ($5, $6::uuid))
                ORDER BY create_time DESC, message_id DESC LIMIT $7""",
            uuid.UUID(contact_id),
            channel,
            kind,
            status,
            datetime.fromisoformat(at) if at else None,
            uuid.UUID(mid) if mid else uuid.UUID(int=0),
            size + 1,
        )
        page = [_trail(r) for r in rows[:size]]
        if len(rows) <= size:
            return page, ""
        last = page[-1]
        assert last.create_time is not None
        return page, paging.encode_token(f"{last.create_time.isoformat()}|{last.message_id}", query)

    async def recipients(self, message_ids: Sequence[str]) -> dict[str, str]:
        rows = await self.pool.fetch(
            "SELECT message_id, address FROM notifications_pipeline.recipients"
            " WHERE message_id = ANY($1::uuid[])",
            [uuid.UUID(m) for m in message_ids],
        )
        return {str(r["message_id"]): r["address"] for r in rows}
