"""Erasure (GDPR art. 17): on contacts' ContactErased, everything personal notifications holds
about that contact goes: its outbox rows (address and rendered text), the recipients of its
messages, its deferred decisions (the trigger's data), its marketing sends, the tracked links of
its messages (a URL may hold personal data: after erasure, its links answer 404), and the
intake's rows about it (soft bounces counted, the SMS gateway's ids of its messages). Its
messages' events stay: they never held personal data. A projection of contacts' published
events (one leader, a checkpoint); its table records each erasure carried out, for operators.
A rebuild (replay) refills that table only: the rows went when the erasure was first applied."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import structlog

from crm.contacts.v1 import events_pb2 as cepb
from shared.events.envelope import decode_as
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

log = structlog.get_logger(__name__)
ERASED = cepb.ContactErased.DESCRIPTOR.full_name
TABLES = (
    ("notifications_pipeline.outbox", "contact_id"),
    ("notifications_pipeline.recipients", "contact_id"),
    ("notifications_pipeline.timers", "requested_contact_id"),
    ("notifications_pipeline.marketing_sends", "contact_id"),
    ("notifications_pipeline.links", "contact_id"),
    ("notifications_intake.soft_bounces", "contact_id"),
    ("notifications_intake.provider_ids", "contact_id"),
)
DDL = """
CREATE TABLE erasures (
    contact_id   uuid        PRIMARY KEY,
    erase_time   timestamptz NOT NULL
);
"""


async def erase(conn: asyncpg.Connection, contact_id: uuid.UUID) -> int:
    """Delete the contact's personal rows from the pipeline's tables; how many went."""
    deleted = 0
    for table, column in TABLES:
        status = await conn.execute(f"DELETE FROM {table} WHERE {column} = $1", contact_id)
        deleted += int(status.rsplit(" ", 1)[-1])
    return deleted


class ErasureProjection:
    name = "notifications-erasure"
    schema = "notifications_erasure"
    ddl = DDL
    categories: Sequence[str] | None = ("contact",)
    types: Sequence[str] | None = (ERASED,)

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        for e in events:
            if e.type != ERASED:
                continue
            contact_id = uuid.UUID(decode_as(e, cepb.ContactErased).message.contact_id)
            if not ctx.replay:
                deleted = await erase(conn, contact_id)
                log.info("contact.erased", contact_id=str(contact_id), rows_deleted=deleted)
            await conn.execute(
                """INSERT INTO erasures (contact_id, erase_time) VALUES ($1, $2)
                   ON CONFLICT (contact_id) DO NOTHING""",
                contact_id,
                e.recorded_at,
            )
