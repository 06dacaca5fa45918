"""Reads of notifications_rm: templates in key order and a template's versions, in keyset
pages (shared/domain/paging.py). They follow the log by the projection's lag."""

from __future__ import annotations

import uuid

import asyncpg
import orjson

from services.notifications.domain.template import Template, Version
from services.notifications.domain.variant import Variant
from shared.domain import paging

SCHEMA = "notifications_rm"


def _version(r: asyncpg.Record) -> Version:
    variants = orjson.loads(r["variants"])
    return Version(
        r["version"], r["name"], tuple(Variant.from_data(v) for v in variants), r["create_time"]
    )


class TemplateQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(
        self, size: int, token: str, include_archived: bool, channel: str
    ) -> tuple[list[Template], str]:
        query = f"templates|{include_archived}|{channel}"
        after = paging.decode_token(token, query) if token else ""
        rows = await self.pool.fetch(
            f"""SELECT t.template_id, t.key, t.channel, t.archived, t.version, t.create_time,
                       t.update_time, v.version AS v_version, v.name, v.variants,
                       v.create_time AS v_create_time
                FROM {SCHEMA}.templates t
                JOIN {SCHEMA}.template_versions v
                  ON v.template_id = t.template_id AND v.version = t.latest_version
                WHERE t.key > $1 AND ($2 OR NOT t.archived) AND ($3 = '' OR t.channel = $3)
                ORDER BY t.key LIMIT $4""",
            after,
            include_archived,
            channel,
            size + 1,
        )
        page = []
        for r in rows[:size]:
            variants = tuple(Variant.from_data(v) for v in orjson.loads(r["variants"]))
            latest = Version(r["v_version"], r["name"], variants, r["v_create_time"])
            page.append(
                Template(
                    template_id=str(r["template_id"]),
                    key=r["key"],
                    channel=r["channel"],
                    versions=(latest,),
                    archived=r["archived"],
                    version=r["version"],
                    create_time=r["create_time"],
                    update_time=r["update_time"],
                )
            )
        more = len(rows) > size
        return page, paging.encode_token(page[-1].key, query) if more else ""

    async def versions(self, template_id: str, size: int, token: str) -> tuple[list[Version], str]:
        """Newest first."""
        query = f"versions|{template_id}"
        before = int(paging.decode_token(token, query)) if token else 2**62
        rows = await self.pool.fetch(
            f"""SELECT version, name, variants, create_time FROM {SCHEMA}.template_versions
                WHERE template_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3""",
            uuid.UUID(template_id),
            before,
            size + 1,
        )
        page = [_version(r) for r in rows[:size]]
        more = len(rows) > size
        return page, paging.encode_token(str(page[-1].version), query) if more else ""
