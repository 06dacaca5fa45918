"""notifications_flows: every flow at its latest version (for listing) and every version of
each (immutable rows), from the flows' own events; and its reads in keyset pages. Reads follow
the log by the projection's lag (GetFlow reads the log itself)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import orjson

from services.notifications.domain.flows import flow as flows
from services.notifications.domain.flows.flow import FlowState, FlowVersion
from shared.domain import paging
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

SCHEMA = "notifications_flows"
DDL = """
CREATE TABLE flows (
    flow_id        uuid        PRIMARY KEY,
    key            text        NOT NULL UNIQUE,
    state          text        NOT NULL,
    latest_version bigint      NOT NULL,
    version        bigint      NOT NULL,
    create_time    timestamptz NOT NULL,
    update_time    timestamptz NOT NULL
);
CREATE TABLE flow_versions (
    flow_id      uuid        NOT NULL,
    version      bigint      NOT NULL,
    definition   jsonb       NOT NULL,
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (flow_id, version)
);
"""
_STATES = {
    flows.PAUSED: flows.PAUSED_STATE,
    flows.RESUMED: flows.ACTIVE,
    flows.ARCHIVED: flows.ARCHIVED_STATE,
}


class FlowsProjection:
    name = "notifications-flows"
    schema = SCHEMA
    ddl = DDL
    categories: Sequence[str] | None = ("flow",)
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        for e in events:
            d = e.data
            fid = uuid.UUID(d["flow_id"])
            if e.type == flows.CREATED:
                await conn.execute(
                    """INSERT INTO flows (flow_id, key, state, latest_version, version,
                           create_time, update_time)
                       VALUES ($1, $2, $3, 1, $4, $5, $5) ON CONFLICT (flow_id) DO NOTHING""",
                    fid,
                    d["key"],
                    flows.ACTIVE,
                    e.version,
                    e.recorded_at,
                )
            elif e.type == flows.REVISED:
                await conn.execute(
                    """UPDATE flows SET latest_version = $2, version = $3, update_time = $4
                       WHERE flow_id = $1""",
                    fid,
                    int(d["version"]),
                    e.version,
                    e.recorded_at,
                )
            elif e.type in _STATES:
                await conn.execute(
                    """UPDATE flows SET state = $2, version = $3, update_time = $4
                       WHERE flow_id = $1""",
                    fid,
                    _STATES[e.type],
                    e.version,
                    e.recorded_at,
                )
                continue
            else:
                continue
            await conn.execute(
                """INSERT INTO flow_versions (flow_id, version, definition, create_time)
                   VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT DO NOTHING""",
                fid,
                int(d.get("version", 1)),
                orjson.dumps(d["definition"]).decode(),
                e.recorded_at,
            )


class FlowQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(
        self, size: int, token: str, include_archived: bool
    ) -> tuple[list[FlowState], str]:
        query = f"flows|{include_archived}"
        after = paging.decode_token(token, query) if token else ""
        rows = await self.pool.fetch(
            f"""SELECT f.flow_id, f.key, f.state, f.version, f.create_time, f.update_time,
                       v.version AS v_version, v.definition, v.create_time AS v_create_time
                FROM {SCHEMA}.flows f
                JOIN {SCHEMA}.flow_versions v
                  ON v.flow_id = f.flow_id AND v.version = f.latest_version
                WHERE f.key > $1 AND ($2 OR f.state <> $3)
                ORDER BY f.key LIMIT $4""",
            after,
            include_archived,
            flows.ARCHIVED_STATE,
            size + 1,
        )
        page = [
            FlowState(
                flow_id=str(r["flow_id"]),
                key=r["key"],
                versions=(
                    FlowVersion(r["v_version"], orjson.loads(r["definition"]), r["v_create_time"]),
                ),
                state=r["state"],
                version=r["version"],
                create_time=r["create_time"],
                update_time=r["update_time"],
            )
            for r in rows[:size]
        ]
        more = len(rows) > size
        return page, paging.encode_token(page[-1].key, query) if more else ""
