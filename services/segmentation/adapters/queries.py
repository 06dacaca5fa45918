"""Reads of segmentation_rm: segments, and membership at any instant from the spans."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.segmentation.domain.segment import Segment
from shared.domain import paging

SCHEMA = "segmentation_rm"


def _segment(r: asyncpg.Record) -> Segment:
    return Segment(
        segment_id=str(r["segment_id"]),
        key=r["key"],
        name=r["name"],
        description=r["description"],
        rule=r["rule"],
        rule_version=r["rule_version"],
        archived=r["archived"],
        version=r["version"],
        create_time=r["create_time"],
        update_time=r["update_time"],
    )


@dataclass(frozen=True)
class Stay:
    segment_id: str
    key: str
    enter_time: datetime


class SegmentQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, segment_id: str) -> Segment | None:
        r = await self.pool.fetchrow(
            f"SELECT * FROM {SCHEMA}.segments WHERE segment_id = $1", uuid.UUID(segment_id)
        )
        return _segment(r) if r else None

    async def rules_by_key(self) -> dict[str, str]:
        rows = await self.pool.fetch(f"SELECT key, rule FROM {SCHEMA}.segments WHERE NOT archived")
        return {r["key"]: r["rule"] for r in rows}

    async def page(
        self, size: int, token: str, include_archived: bool
    ) -> tuple[list[Segment], str]:
        query = f"segments|{include_archived}"
        after = paging.decode_token(token, query) if token else ""
        rows = await self.pool.fetch(
            f"""SELECT * FROM {SCHEMA}.segments WHERE key > $1 AND ($2 OR NOT archived)
                ORDER BY key LIMIT $3""",
            after,
            include_archived,
            size + 1,
        )
        page = [_segment(r) for r in rows[:size]]
        more = len(rows) > size
        return page, paging.encode_token(page[-1].key, query) if more else ""

    async def stay(self, segment_id: str, contact_id: str, at: datetime) -> datetime | None:
        """When the contact's stay in the segment that covers ``at`` began (None: not a
        member at ``at``)."""
        value: datetime | None = await self.pool.fetchval(
            f"""SELECT enter_time FROM {SCHEMA}.spans
                WHERE segment_id = $1 AND contact_id = $2 AND enter_time <= $3
                  AND (exit_time IS NULL OR exit_time > $3)
                ORDER BY enter_time DESC LIMIT 1""",
            uuid.UUID(segment_id),
            uuid.UUID(contact_id),
            at,
        )
        return value

    async def last_exit(self, segment_id: str, contact_id: str, at: datetime) -> datetime | None:
        value: datetime | None = await self.pool.fetchval(
            f"""SELECT max(exit_time) FROM {SCHEMA}.spans
                WHERE segment_id = $1 AND contact_id = $2 AND exit_time <= $3""",
            uuid.UUID(segment_id),
            uuid.UUID(contact_id),
            at,
        )
        return value

    async def members(
        self, segment_id: str, at: datetime, size: int, token: str
    ) -> tuple[list[str], str]:
        query = f"members|{segment_id}|{at.isoformat()}"
        after = paging.decode_token(token, query) if token else str(uuid.UUID(int=0))
        rows = await self.pool.fetch(
            f"""SELECT DISTINCT contact_id FROM {SCHEMA}.spans
                WHERE segment_id = $1 AND enter_time <= $2
                  AND (exit_time IS NULL OR exit_time > $2) AND contact_id > $3
                ORDER BY contact_id LIMIT $4""",
            uuid.UUID(segment_id),
            at,
            uuid.UUID(after),
            size + 1,
        )
        ids = [str(r["contact_id"]) for r in rows[:size]]
        return ids, paging.encode_token(ids[-1], query) if len(rows) > size else ""

    async def segments_of(self, contact_id: str, at: datetime) -> list[Stay]:
        rows = await self.pool.fetch(
            f"""SELECT s.segment_id::text, g.key, s.enter_time FROM {SCHEMA}.spans s
                JOIN {SCHEMA}.segments g USING (segment_id)
                WHERE s.contact_id = $1 AND s.enter_time <= $2
                  AND (s.exit_time IS NULL OR s.exit_time > $2)
                ORDER BY g.key""",
            uuid.UUID(contact_id),
            at,
        )
        return [Stay(r[0], r[1], r[2]) for r in rows]

    async def sizes(self, segment_id: str, instants: list[datetime]) -> list[int]:
        """Exact member counts at each instant, from the spans."""
        rows = await self.pool.fetch(
            f"""SELECT t, (SELECT count(*) FROM {SCHEMA}.spans s
                         WHERE s.segment_id = $1 AND s.enter_time <= t
                           AND (s.exit_time IS NULL OR s.exit_time > t))
                FROM unnest($2::timestamptz[]) WITH ORDINALITY AS u(t, i) ORDER BY i""",
            uuid.UUID(segment_id),
            instants,
        )
        return [int(r[1]) for r in rows]
