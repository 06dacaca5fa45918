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
from services.segmentation.application.ports import ContactVersions, PersonalFacts
from services.segmentation.domain.facts import bucket_of
from shared.domain.timestamps import timestamp_from_text, timestamp_text
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
        for e in events:
            for cid, group in await self._one(conn, e, personal):
                t = touched.setdefault(cid, Touched())
                t.groups.add(group)
                t.cause = e
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
        if t.startswith(OX):
            return await _order_or_cart(conn, e)
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


async def _owner(conn: asyncpg.Connection, cid: str) -> uuid.UUID:
    """Whose facts an order of ``cid`` counts for: the survivor once ``cid`` is merged. A
    contact the facts do not know yet (its events come later) gets its row; one round trip."""
    owner: uuid.UUID = await conn.fetchval(
        """WITH known AS (
               INSERT INTO contacts (contact_id, bucket) VALUES ($1, $2)
               ON CONFLICT (contact_id) DO NOTHING RETURNING contact_id)
           SELECT coalesce((SELECT merged_into FROM contacts WHERE contact_id = $1), $1)""",
        uuid.UUID(cid),
        bucket_of(cid),
    )
    return owner


async def _order_or_cart(conn: asyncpg.Connection, e: RecordedEvent) -> list[tuple[str, str]]:
    d, t = e.data, e.type
    cid = d.get("contact_id", "")
    if not cid:
        return []
    owner, origin = await _owner(conn, cid), uuid.UUID(cid)
    if t == OX + "OrderPlaced":
        placed = timestamp_from_text(d["place_time"]) if d.get("place_time") else e.recorded_at
        await conn.execute(
            """INSERT INTO orders (order_id, contact_id, origin_contact_id, currency, total,
                                   place_time)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO NOTHING""",
            uuid.UUID(d["order_id"]),
            owner,
            origin,
            d["currency"],
            int(d.get("total", 0)),
            placed,
        )
        await conn.executemany(
            """INSERT INTO purchases (order_id, sku, contact_id, origin_contact_id, quantity, time)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (order_id, sku) DO UPDATE
                   SET quantity = purchases.quantity + excluded.quantity""",
            [
                (uuid.UUID(d["order_id"]), i["sku"], owner, origin, int(i["quantity"]), placed)
                for i in d.get("items", ())
                if i.get("sku")
            ],
        )
        return [(str(owner), "orders")]
    if t == OX + "OrderRefunded":
        await conn.execute(
            "UPDATE orders SET refunded = refunded + $2 WHERE order_id = $1",
            uuid.UUID(d["order_id"]),
            int(d.get("amount", 0)),
        )
        return [(str(owner), "orders")]
    if t == OX + "OrderCancelled":
        await conn.execute(
            "UPDATE orders SET cancelled = true WHERE order_id = $1", uuid.UUID(d["order_id"])
        )
        return [(str(owner), "orders")]
    if t in (OX + "CartAbandoned", OX + "CartRecovered"):
        abandoned = t == OX + "CartAbandoned"
        await conn.execute(
            """INSERT INTO carts (cart_id, contact_id, origin_contact_id, abandoned_time,
                                  recovered)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (cart_id) DO UPDATE SET
                   abandoned_time = coalesce(excluded.abandoned_time, carts.abandoned_time),
                   recovered = carts.recovered OR excluded.recovered""",
            uuid.UUID(d["cart_id"]),
            owner,
            origin,
            e.recorded_at if abandoned else None,
            not abandoned,
        )
        return [(str(owner), "carts")]
    return []
