"""notifications_reports: what each message did (its origin: flow step or campaign variant;
sent, delivered, bounced, failed; first open, first click, unsubscribe), the contacts' touches
(clicks, or opens and clicks: the attribution rule's) and the orders credited to a message
(domain/attribution.py), from notifications' message events, orders' OrderPlaced and contacts'
ContactMerged and ContactUnmerged (decoded with their events_pb2: an order of a survivor is
credited to the touches of the contacts merged into it, while they are). A projection only: it
writes nothing outside its schema, so a rebuild sends nothing; it reads the events' own times,
never the clock, so a rebuild credits the same orders.

The rule is part of the tables' definition (the `rule` row in the DDL): changing
ATTRIBUTION_WINDOW_DAYS or ATTRIBUTION_TOUCH changes the definition, and the project role's
leader rebuilds the read model side by side under the new rule."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from crm.contacts.v1 import events_pb2 as cepb
from crm.orders.v1 import events_pb2 as oepb
from services.notifications.domain import attribution, tracking
from services.notifications.domain import decision as d
from shared.events.envelope import decode_as
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

SCHEMA = "notifications_reports"
PLACED = oepb.OrderPlaced.DESCRIPTOR.full_name
MERGED = cepb.ContactMerged.DESCRIPTOR.full_name
UNMERGED = cepb.ContactUnmerged.DESCRIPTOR.full_name
TABLES = """
CREATE TABLE messages (
    message_id       uuid        PRIMARY KEY,
    contact_id       uuid,
    channel          text        NOT NULL,
    template_id      text        NOT NULL,
    source           text        NOT NULL,
    flow_id          text        NOT NULL,
    flow_version     bigint      NOT NULL,
    step_id          text        NOT NULL,
    campaign_id      text        NOT NULL,
    variant          text        NOT NULL,
    decide_time      timestamptz NOT NULL,
    send_time        timestamptz,
    delivered        boolean     NOT NULL DEFAULT false,
    bounced          boolean     NOT NULL DEFAULT false,
    failed           boolean     NOT NULL DEFAULT false,
    open_time        timestamptz,
    click_time       timestamptz,
    unsubscribe_time timestamptz
);
CREATE INDEX messages_by_flow ON messages (flow_id, step_id) WHERE flow_id <> '';
CREATE INDEX messages_by_campaign ON messages (campaign_id, variant) WHERE campaign_id <> '';
CREATE INDEX messages_by_template ON messages (template_id) WHERE source = 'api';
CREATE TABLE touches (
    contact_id  uuid        NOT NULL,
    touch_time  timestamptz NOT NULL,
    message_id  uuid        NOT NULL,
    PRIMARY KEY (contact_id, touch_time, message_id)
);
CREATE TABLE conversions (
    order_id     uuid        PRIMARY KEY,
    message_id   uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    currency     text        NOT NULL,
    amount_minor bigint      NOT NULL,
    order_time   timestamptz NOT NULL,
    touch_time   timestamptz NOT NULL
);
CREATE INDEX conversions_by_message ON conversions (message_id);
CREATE TABLE merges (
    contact_id   uuid PRIMARY KEY,
    survivor_id  uuid NOT NULL
);
CREATE INDEX merges_by_survivor ON merges (survivor_id);
CREATE TABLE rule (
    window_seconds double precision NOT NULL,
    touch          text             NOT NULL
);
"""
_FLAGS = {
    d.DELIVERED: "delivered = true",
    d.BOUNCED: "bounced = true",
    tracking.OPENED: "open_time = coalesce(open_time, $2)",
    tracking.CLICKED: "click_time = coalesce(click_time, $2)",
    tracking.UNSUBSCRIBED: "unsubscribe_time = coalesce(unsubscribe_time, $2)",
    d.SENT: "send_time = coalesce(send_time, $2)",
}
# The touches of the order's contact and of the contacts merged into it (and into those).
_CREDIT = """
WITH RECURSIVE owners (contact_id) AS (
    SELECT $2::uuid
    UNION SELECT m.contact_id FROM merges m JOIN owners o ON m.survivor_id = o.contact_id
)
INSERT INTO conversions (order_id, message_id, contact_id, currency, amount_minor, order_time,
    touch_time)
SELECT $1, t.message_id, $2, $3, $4, $5, t.touch_time FROM touches t
WHERE t.contact_id IN (SELECT contact_id FROM owners)
  AND t.touch_time <= $5 AND t.touch_time >= $5 - $6::interval
ORDER BY t.touch_time DESC, t.message_id DESC LIMIT 1
ON CONFLICT (order_id) DO NOTHING
"""


_DECIDED = """
INSERT INTO messages (message_id, contact_id, channel, template_id, source, flow_id,
    flow_version, step_id, campaign_id, variant, decide_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (message_id) DO NOTHING
"""
# A touch: the message's first click (or open) noted, and the contact's touch recorded.
_TOUCH = """
WITH m AS (UPDATE messages SET {} WHERE message_id = $1 RETURNING contact_id, message_id)
INSERT INTO touches (contact_id, touch_time, message_id)
SELECT contact_id, $2, message_id FROM m WHERE contact_id IS NOT NULL
ON CONFLICT DO NOTHING
"""
_MERGE = """
INSERT INTO merges (contact_id, survivor_id) VALUES ($1, $2)
ON CONFLICT (contact_id) DO UPDATE SET survivor_id = excluded.survivor_id
"""


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


class ReportsProjection:
    name = "notifications-reports"
    schema = SCHEMA
    categories: Sequence[str] | None = ("message", "order", "contact")
    types: Sequence[str] | None = (
        d.DECIDED,
        d.SENT,
        d.FAILED,
        d.DELIVERED,
        d.BOUNCED,
        *tracking.EVENTS,
        PLACED,
        MERGED,
        UNMERGED,
    )

    def __init__(self, rule: attribution.Rule | None = None) -> None:
        self.rule = rule or attribution.Rule()
        seconds = self.rule.window.total_seconds()
        self.ddl = TABLES + f"INSERT INTO rule VALUES ({seconds!r}, '{self.rule.touch}');\n"

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        """One statement per event, in log order; a run of events with the same statement goes
        in one executemany (still in order: nothing is reordered)."""
        sql, run = "", list[tuple[Any, ...]]()
        for e in events:
            statement = self._statement(e)
            if statement is None:
                continue
            if statement[0] != sql and run:
                await conn.executemany(sql, run)
                run = []
            sql = statement[0]
            run.append(statement[1])
        if run:
            await conn.executemany(sql, run)

    def _statement(self, e: RecordedEvent) -> tuple[str, tuple[Any, ...]] | None:
        if e.type == PLACED:
            return self._placed(e)
        if e.type == MERGED:
            merged = decode_as(e, cepb.ContactMerged).message
            return _MERGE, (uuid.UUID(merged.contact_id), uuid.UUID(merged.survivor_id))
        if e.type == UNMERGED:
            unmerged = decode_as(e, cepb.ContactUnmerged).message
            return "DELETE FROM merges WHERE contact_id = $1", (uuid.UUID(unmerged.contact_id),)
        mid = uuid.UUID(e.data["message_id"])
        if e.type == d.DECIDED:
            return self._decided(mid, e)
        if e.type == d.FAILED:
            final = bool(e.data.get("final"))
            return (
                ("UPDATE messages SET failed = true WHERE message_id = $1", (mid,))
                if final
                else None
            )
        flag = _FLAGS[e.type]
        if e.type in self.rule.touch_types:
            return _TOUCH.format(flag), (mid, e.recorded_at)
        if "$2" in flag:
            return f"UPDATE messages SET {flag} WHERE message_id = $1", (mid, e.recorded_at)
        return f"UPDATE messages SET {flag} WHERE message_id = $1", (mid,)

    def _decided(self, mid: uuid.UUID, e: RecordedEvent) -> tuple[str, tuple[Any, ...]] | None:
        """The first decision names the message's contact and origin; test messages are not
        reported."""
        data = e.data
        origin = d.Origin.from_data(data.get("trigger", {}))
        if data.get("test") or origin.source == d.TEST:
            return None
        return _DECIDED, (
            mid,
            _uuid(str(data.get("contact_id", ""))),
            str(data.get("channel", "")),
            str(data.get("template_id", "")),
            origin.source,
            origin.flow_id,
            origin.flow_version,
            origin.step_id,
            origin.campaign_id,
            origin.variant,
            e.recorded_at,
        )

    def _placed(self, e: RecordedEvent) -> tuple[str, tuple[Any, ...]] | None:
        """Credit the order to its contact's last touch within the window, once."""
        placed = decode_as(e, oepb.OrderPlaced).message
        contact, order = _uuid(placed.contact_id), _uuid(placed.order_id)
        if contact is None or order is None:
            return None
        at: datetime = (
            placed.place_time.ToDatetime(tzinfo=UTC)
            if placed.HasField("place_time")
            else e.recorded_at
        )
        return _CREDIT, (order, contact, placed.currency, placed.total, at, self.rule.window)
