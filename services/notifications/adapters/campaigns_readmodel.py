"""notifications_campaigns: every campaign folded from its own events (for listing, and for the
campaign engine to find the scheduled ones due), and its reads in keyset pages, newest first.
Reads follow the log by the projection's lag (GetCampaign reads the log itself)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from services.notifications.adapters.flow_run_tables import set_zone
from services.notifications.domain.campaigns import campaign as c
from services.notifications.domain.campaigns.campaign import Campaign
from services.notifications.domain.zones import ZONED, zone_set
from shared.domain import paging
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

SCHEMA = "notifications_campaigns"
DDL = """
CREATE TABLE campaigns (
    campaign_id     uuid        PRIMARY KEY,
    state           text        NOT NULL,
    paused_from     text        NOT NULL,
    definition      jsonb       NOT NULL,
    schedule        jsonb       NOT NULL,
    start_at        timestamptz,
    audience_size   bigint      NOT NULL,
    audience_digest text        NOT NULL,
    start_time      timestamptz,
    tally           jsonb       NOT NULL,
    version         bigint      NOT NULL,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL
);
CREATE INDEX campaigns_newest ON campaigns (create_time DESC, campaign_id DESC);
CREATE INDEX campaigns_open ON campaigns (start_at) WHERE state IN ('scheduled', 'sending');
"""
COLUMNS = """campaign_id, state, paused_from, definition, schedule, start_at, audience_size,
    audience_digest, start_time, tally, version, create_time, update_time"""


def campaign_of(r: asyncpg.Record) -> Campaign:
    schedule = orjson.loads(r["schedule"])
    return Campaign(
        campaign_id=str(r["campaign_id"]),
        state=r["state"],
        send_at=r["start_at"],
        local_time=schedule.get("local_time", ""),
        audience_size=r["audience_size"],
        audience_digest=r["audience_digest"],
        paused_from=r["paused_from"],
        definition=orjson.loads(r["definition"]),
        schedule=schedule,
        start_time=r["start_time"],
        tally=orjson.loads(r["tally"]),
        version=r["version"],
        create_time=r["create_time"],
        update_time=r["update_time"],
    )


async def save(conn: asyncpg.Connection, s: Campaign) -> None:
    assert s.create_time is not None and s.update_time is not None
    await conn.execute(
        f"""INSERT INTO campaigns ({COLUMNS})
            VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10::jsonb, $11, $12, $13)
            ON CONFLICT (campaign_id) DO UPDATE SET state = $2, paused_from = $3,
                schedule = $5::jsonb, start_at = $6, audience_size = $7, audience_digest = $8,
                start_time = $9, tally = $10::jsonb, version = $11, update_time = $13""",
        uuid.UUID(s.campaign_id),
        s.state,
        s.paused_from,
        orjson.dumps(dict(s.definition)).decode(),
        orjson.dumps(dict(s.schedule)).decode(),
        s.send_at,
        s.audience_size,
        s.audience_digest,
        s.start_time,
        orjson.dumps(dict(s.tally)).decode(),
        s.version,
        s.create_time,
        s.update_time,
    )


class CampaignsProjection:
    name = "notifications-campaigns"
    schema = SCHEMA
    ddl = DDL
    categories: Sequence[str] | None = ("campaign",)
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        for e in events:
            cid = uuid.UUID(e.data["campaign_id"])
            row = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM campaigns WHERE campaign_id = $1", cid
            )
            state = campaign_of(row) if row is not None else None
            if state is not None and e.version <= state.version:
                continue  # seen (a batch done again)
            if state is None and e.type != c.CREATED:
                continue
            await save(conn, c.apply(state, e.type, e.data, e.recorded_at, e.version))


class CampaignQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(self, size: int, token: str) -> tuple[list[Campaign], str]:
        after = paging.decode_token(token, "campaigns") if token else None
        at, last = (
            (datetime.fromisoformat(after[0]), uuid.UUID(after[1])) if after else (None, None)
        )
        rows = await self.pool.fetch(
            f"""SELECT {COLUMNS} FROM {SCHEMA}.campaigns
                WHERE $1::timestamptz IS NULL OR (create_time, campaign_id) < ($1, $2)
                ORDER BY create_time DESC, campaign_id DESC LIMIT $3""",
            at,
            last,
            size + 1,
        )
        page = [campaign_of(r) for r in rows[:size]]
        if len(rows) <= size:
            return page, ""
        tail = page[-1]
        assert tail.create_time is not None
        return page, paging.encode_token(
            [tail.create_time.isoformat(), tail.campaign_id], "campaigns"
        )


OUTCOMES = ("pending", "sent", "skipped", "deferred", "held_out", "failed", "cancelled")


@dataclass(frozen=True)
class RecipientRow:
    contact_id: str
    variant: str
    send_time: datetime
    done_time: datetime | None
    outcome: str


async def recipients_page(
    pool: asyncpg.Pool, campaign_id: str, outcome: str, size: int, token: str
) -> tuple[list[RecipientRow], str]:
    """A campaign's recipient rows (notifications_pipeline.campaign_recipients) in contact id
    order, ``outcome`` filtering ("pending": not taken yet; "": all)."""
    fingerprint = f"recipients:{campaign_id}:{outcome}"
    after = uuid.UUID(paging.decode_token(token, fingerprint)) if token else None
    rows = await pool.fetch(
        """SELECT contact_id, variant, due_at, done_at, outcome
             FROM notifications_pipeline.campaign_recipients
            WHERE campaign_id = $1 AND ($2::uuid IS NULL OR contact_id > $2)
              AND ($3 = '' OR ($3 = 'pending' AND done_at IS NULL)
                   OR (done_at IS NOT NULL AND outcome = $3))
            ORDER BY contact_id LIMIT $4""",
        uuid.UUID(campaign_id),
        after,
        outcome,
        size + 1,
    )
    page = [
        RecipientRow(
            str(r["contact_id"]),
            r["variant"],
            r["due_at"],
            r["done_at"],
            r["outcome"] if r["done_at"] is not None else "pending",
        )
        for r in rows[:size]
    ]
    if len(rows) <= size:
        return page, ""
    return page, paging.encode_token(page[-1].contact_id, fingerprint)


ZONES = "notifications_zones"


class ZonesProjection:
    """notifications_zones: each contact's time zone, from contacts' events, for campaigns sent
    at a local time (the recipients' send instants are computed from it at the start)."""

    name = "notifications-zones"
    schema = ZONES
    ddl = "CREATE TABLE zones (contact_id uuid PRIMARY KEY, time_zone text NOT NULL);"
    categories: Sequence[str] | None = ("contact",)
    types: Sequence[str] | None = ZONED

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        for e in events:
            zone_name = zone_set(e.type, e.data)
            if zone_name is not None:
                await set_zone(conn, e.data["contact_id"], zone_name)
