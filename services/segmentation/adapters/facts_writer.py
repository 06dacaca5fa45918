"""Contacts' and orders' published events into the facts tables (adapters/facts_tables.py).

``FactsWriter.apply`` writes one page of upstream events inside the engine's transaction and
returns which contacts' facts changed (and which groups of facts, so only the segments that
read them are evaluated again), each with the last event that changed them: the cause their
membership events will name. Personal facts (email domain, attributes) come from the contacts
service as of each event's stream version; an erasure drops them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

import crm.contacts.v1.events_pb2
import crm.orders.v1.events_pb2  # noqa: F401
from services.segmentation.adapters.order_facts import write_run
from services.segmentation.application.ports import ContactVersions, PersonalFacts
from services.segmentation.domain.facts import bucket_of
from shared.domain.timestamps import timestamp_text
from shared.eventstore import RecordedEvent

CX = "crm.contacts.v1."  # contacts event types
OX = "crm.orders.v1."  # orders event types
CATEGORIES = ("contact", "consent", "order", "cart")
CONSENT_STATES = {
    CX + "ConsentGranted": "subscribed",
    CX + "ConsentConfirmed": "subscribed",
    CX + "ConsentWithdrawn": "unsubscribed",
    CX + "ConsentConfirmationRequested": "pending",
}
PERSONAL_CHANGES = {"email", "attributes"}
# Every event type that changes a fact (the engine subscribes to these only).
HANDLED = (
    *(
        CX + t
        for t in (
            "ContactRegistered",
            "ContactUpdated",
            "ContactAbsorbed",
            "ContactAbsorptionReverted",
            "ContactArchived",
            "ContactRestored",
            "ContactErased",
            "ContactMerged",
            "ContactUnmerged",
            "ChannelSuppressed",
            "ChannelUnsuppressed",
        )
    ),
    *CONSENT_STATES,
    *(
        OX + t
        for t in (
            "OrderPlaced",
            "OrderRefunded",
            "OrderCancelled",
            "CartAbandoned",
            "CartRecovered",
        )
    ),
)


@dataclass
class Touched:
    """A contact whose facts changed in this page."""

    groups: set[str] = field(default_factory=set)  # profile, consent, orders, carts, merge
    cause: RecordedEvent | None = None


def typed(value: Any) -> dict[str, Any]:
    """An attribute value as the facts tables store it."""
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, int | float):
        return {"n": value}
    if isinstance(value, datetime):
        return {"t": timestamp_text(value)}
    return {"s": str(value)}


class FactsWriter:
    def __init__(self, contacts: ContactVersions) -> None:
        self.contacts = contacts

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]
    ) -> dict[str, Touched]:
        touched: dict[str, Touched] = {}
        personal = await self._personal(events)
        run: list[RecordedEvent] = []  # orders' events, written together

        def touch(cid: str, group: str, e: RecordedEvent) -> None:
            t = touched.setdefault(cid, Touched())
            t.groups.add(group)
            t.cause = e

        for e in [*events, None]:
            if e is not None and e.type.startswith(OX):
                run.append(e)
                continue
            for cid, group, cause in await write_run(conn, run) if run else []:
                touch(cid, group, cause)
            run = []
            if e is not None:
                for cid, group in await self._one(conn, e, personal):
                    touch(cid, group, e)
        return touched

    async def _personal(
        self, events: Sequence[RecordedEvent]
    ) -> dict[tuple[str, int], PersonalFacts]:
        refs = [
            (e.data["contact_id"], e.version)
            for e in events
            if e.type.startswith(CX + "Contact") and "personal" in e.data
        ]
        return await self.contacts.personal(refs) if refs else {}

    async def _one(
        self,
        conn: asyncpg.Connection,
        e: RecordedEvent,
        personal: dict[tuple[str, int], PersonalFacts],
    ) -> list[tuple[str, str]]:
        d, t = e.data, e.type
        if t.startswith(CX):
            cid = d["contact_id"]
            await _ensure(conn, cid, e.recorded_at if t == CX + "ContactRegistered" else None)
        if t in (CX + "ContactRegistered", CX + "ContactUpdated"):
            changed = set(d.get("changed_fields", ())) if t == CX + "ContactUpdated" else None
            await _profile(conn, cid, d, changed)
            if "personal" in d or (changed is not None and changed & PERSONAL_CHANGES):
                await _set_personal(conn, cid, personal.get((cid, e.version), PersonalFacts()))
            return [(cid, "profile")]
        if t in (CX + "ContactAbsorbed", CX + "ContactAbsorptionReverted"):
            await _set_personal(conn, cid, personal.get((cid, e.version), PersonalFacts()))
            return [(cid, "profile")]
        if t in (CX + "ContactArchived", CX + "ContactRestored"):
            await conn.execute(
                "UPDATE contacts SET archived = $2 WHERE contact_id = $1",
                uuid.UUID(cid),
                t == CX + "ContactArchived",
            )
            return [(cid, "profile")]
        if t == CX + "ContactErased":
            await conn.execute(
                """UPDATE contacts SET erased = true, email_domain = '', attributes = '{}'
                   WHERE contact_id = $1""",
                uuid.UUID(cid),
            )
            return [(cid, "profile")]
        if t == CX + "ContactMerged":
            return await _merge(conn, cid, d["survivor_id"])
        if t == CX + "ContactUnmerged":
            return await _unmerge(conn, cid, d["survivor_id"])
        if t in CONSENT_STATES:
            await conn.execute(
                "UPDATE contacts SET consent = consent || $2::jsonb WHERE contact_id = $1",
                uuid.UUID(cid),
                orjson.dumps({d["channel"]: CONSENT_STATES[t]}).decode(),
            )
            return [(cid, "consent")]
        if t in (CX + "ChannelSuppressed", CX + "ChannelUnsuppressed"):
            await conn.execute(
                """UPDATE contacts SET suppressed = CASE WHEN $3
                       THEN array(SELECT DISTINCT unnest(suppressed || $2::text))
                       ELSE array_remove(suppressed, $2) END
                   WHERE contact_id = $1""",
                uuid.UUID(cid),
                d["channel"],
                t == CX + "ChannelSuppressed",
            )
            return [(cid, "consent")]
        return []


async def _ensure(conn: asyncpg.Connection, cid: str, created: datetime | None) -> None:
    await conn.execute(
        """INSERT INTO contacts (contact_id, created_at, bucket) VALUES ($1, $2, $3)
           ON CONFLICT (contact_id) DO UPDATE
               SET created_at = coalesce(contacts.created_at, excluded.created_at)""",
        uuid.UUID(cid),
        created,
        bucket_of(cid),
    )


async def _profile(
    conn: asyncpg.Connection, cid: str, d: dict[str, Any], changed: set[str] | None
) -> None:
    def has(name: str) -> bool:
        return changed is None or name in changed

    await conn.execute(
        """UPDATE contacts SET
               tags = CASE WHEN $2 THEN $3::text[] ELSE tags END,
               locale = CASE WHEN $4 THEN $5 ELSE locale END,
               time_zone = CASE WHEN $6 THEN $7 ELSE time_zone END
           WHERE contact_id = $1""",
        uuid.UUID(cid),
        has("tags"),
        list(d.get("tags", ())),
        has("locale"),
        d.get("locale", ""),
        has("time_zone"),
        d.get("time_zone", ""),
    )


async def _set_personal(conn: asyncpg.Connection, cid: str, facts: PersonalFacts) -> None:
    await conn.execute(
        """UPDATE contacts SET email_domain = $2, attributes = $3::jsonb
           WHERE contact_id = $1 AND NOT erased""",
        uuid.UUID(cid),
        facts.email_domain,
        orjson.dumps({k: typed(v) for k, v in facts.attributes.items()}).decode(),
    )


async def _merge(conn: asyncpg.Connection, merged: str, survivor: str) -> list[tuple[str, str]]:
    """The merged contact's orders, purchases and carts count for the survivor from now on."""
    m, s = uuid.UUID(merged), uuid.UUID(survivor)
    await conn.execute("UPDATE contacts SET merged_into = $2 WHERE contact_id = $1", m, s)
    for table in ("orders", "purchases", "carts"):
        await conn.execute(f"UPDATE {table} SET contact_id = $2 WHERE contact_id = $1", m, s)
    return [(merged, "merge"), (survivor, "merge")]


async def _unmerge(conn: asyncpg.Connection, merged: str, survivor: str) -> list[tuple[str, str]]:
    m, s = uuid.UUID(merged), uuid.UUID(survivor)
    await conn.execute("UPDATE contacts SET merged_into = NULL WHERE contact_id = $1", m)
    for table in ("orders", "purchases", "carts"):
        await conn.execute(
            f"UPDATE {table} SET contact_id = $1 WHERE origin_contact_id = $1 AND contact_id = $2",
            m,
            s,
        )
    return [(merged, "merge"), (survivor, "merge")]
