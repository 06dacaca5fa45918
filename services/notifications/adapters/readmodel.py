"""notifications_rm: the templates at their latest version (for listing) and every version of
each (immutable rows), from notifications' own events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import orjson

from services.notifications.domain import template as templates
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

DDL = """
CREATE TABLE templates (
    template_id    uuid PRIMARY KEY,
    key            text        NOT NULL UNIQUE,
    channel        text        NOT NULL,
    name           text        NOT NULL,
    latest_version bigint      NOT NULL,
    archived       boolean     NOT NULL DEFAULT false,
    version        bigint      NOT NULL,
    create_time    timestamptz NOT NULL,
    update_time    timestamptz NOT NULL
);
CREATE INDEX templates_by_channel ON templates (channel, key);
CREATE TABLE template_versions (
    template_id  uuid        NOT NULL,
    version      bigint      NOT NULL,
    name         text        NOT NULL,
    variants     jsonb       NOT NULL,
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (template_id, version)
);
"""


class TemplatesProjection:
    name = "notifications-templates"
    schema = "notifications_rm"
    ddl = DDL
    categories: Sequence[str] | None = ("template",)
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        for e in events:
            d = e.data
            if e.type not in (templates.CREATED, templates.REVISED, templates.ARCHIVED):
                continue
            tid = uuid.UUID(d["template_id"])
            if e.type == templates.CREATED:
                await conn.execute(
                    """INSERT INTO templates (template_id, key, channel, name, latest_version,
                           version, create_time, update_time)
                       VALUES ($1, $2, $3, $4, 1, $5, $6, $6)
                       ON CONFLICT (template_id) DO NOTHING""",
                    tid,
                    d["key"],
                    d["channel"],
                    d.get("name", ""),
                    e.version,
                    e.recorded_at,
                )
            elif e.type == templates.REVISED:
                await conn.execute(
                    """UPDATE templates SET name = $2, latest_version = $3, version = $4,
                           update_time = $5
                       WHERE template_id = $1""",
                    tid,
                    d.get("name", ""),
                    int(d["version"]),
                    e.version,
                    e.recorded_at,
                )
            else:
                await conn.execute(
                    """UPDATE templates SET archived = true, version = $2, update_time = $3
                       WHERE template_id = $1""",
                    tid,
                    e.version,
                    e.recorded_at,
                )
                continue
            await conn.execute(
                """INSERT INTO template_versions (template_id, version, name, variants,
                       create_time)
                   VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT DO NOTHING""",
                tid,
                int(d.get("version", 1)),
                d.get("name", ""),
                orjson.dumps(d.get("variants", [])).decode(),
                e.recorded_at,
            )
