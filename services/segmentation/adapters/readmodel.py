"""segmentation_rm: the segments as defined, and membership as spans of time, from
segmentation's own events. A span [enter_time, exit_time) per stay of a contact in a segment
answers "member at T?" for any T with one index probe; a rebuild from the log gives the same
spans, since the events carry their effective instants."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.segmentation.application import membership as m
from services.segmentation.domain import segment as segments
from shared.domain.timestamps import timestamp_from_text
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

DDL = """
CREATE TABLE segments (
    segment_id   uuid PRIMARY KEY,
    key          text        NOT NULL UNIQUE,
    name         text        NOT NULL,
    description  text        NOT NULL,
    rule         text        NOT NULL,
    rule_version bigint      NOT NULL,
    archived     boolean     NOT NULL DEFAULT false,
    version      bigint      NOT NULL,
    create_time  timestamptz NOT NULL,
    update_time  timestamptz NOT NULL
);
CREATE TABLE spans (
    segment_id  uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    enter_time  timestamptz NOT NULL,
    exit_time   timestamptz,
    PRIMARY KEY (segment_id, contact_id, enter_time)
);
CREATE INDEX spans_by_contact ON spans (contact_id, enter_time);
CREATE INDEX spans_open ON spans (segment_id, contact_id) WHERE exit_time IS NULL;
"""


class SegmentsProjection:
    name = "segmentation-segments"
    schema = "segmentation_rm"
    ddl = DDL
    categories: Sequence[str] | None = ("segment", "segmentmembership")
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        for e in events:
            d = e.data
            if e.type == segments.CREATED:
                await conn.execute(
                    """INSERT INTO segments (segment_id, key, name, description, rule,
                           rule_version, version, create_time, update_time)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                       ON CONFLICT (segment_id) DO NOTHING""",
                    uuid.UUID(d["segment_id"]),
                    d["key"],
                    d.get("name", ""),
                    d.get("description", ""),
                    d["rule"],
                    int(d["rule_version"]),
                    e.version,
                    e.recorded_at,
                )
            elif e.type == segments.UPDATED:
                await conn.execute(
                    """UPDATE segments SET name = $2, description = $3, rule = $4,
                           rule_version = $5, version = $6, update_time = $7
                       WHERE segment_id = $1""",
                    uuid.UUID(d["segment_id"]),
                    d.get("name", ""),
                    d.get("description", ""),
                    d["rule"],
                    int(d["rule_version"]),
                    e.version,
                    e.recorded_at,
                )
            elif e.type == segments.ARCHIVED:
                await conn.execute(
                    """UPDATE segments SET archived = true, version = $2, update_time = $3
                       WHERE segment_id = $1""",
                    uuid.UUID(d["segment_id"]),
                    e.version,
                    e.recorded_at,
                )
            elif e.type in (m.ENTERED, m.EXITED):
                await _span(conn, e.type == m.ENTERED, d)


async def _span(conn: asyncpg.Connection, entered: bool, d: dict[str, object]) -> None:
    sid, cid = uuid.UUID(str(d["segment_id"])), uuid.UUID(str(d["contact_id"]))
    at: datetime = timestamp_from_text(str(d["effective_time"]))
    if entered:
        await conn.execute(
            "INSERT INTO spans (segment_id, contact_id, enter_time) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            sid,
            cid,
            at,
        )
    else:
        await conn.execute(
            """UPDATE spans SET exit_time = $3
               WHERE segment_id = $1 AND contact_id = $2 AND exit_time IS NULL""",
            sid,
            cid,
            at,
        )
