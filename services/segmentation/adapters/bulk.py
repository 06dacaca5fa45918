"""Every contact evaluated at once for one segment (a new segment, a new rule version): the rule
compiled to SQL selects the members (adapters/rule_sql.py, which gives exactly what the Python
evaluator gives), the difference with the current members becomes entry and exit events, and,
for a rule that depends on the clock, each contact's next flip becomes a timer (Python, a chunk
of contacts at a time)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from services.segmentation.adapters.facts_tables import load_facts
from services.segmentation.adapters.rule_sql import members_query
from services.segmentation.application import membership as m
from services.segmentation.domain import rules
from services.segmentation.domain.rules import FactGroup
from shared.eventstore import StreamAppend

CHUNK = 1000


async def evaluate_everyone(
    conn: asyncpg.Connection,
    seg: m.ActiveSegment,
    cause: str,
    cause_id: str,
    at: datetime,
    meta: Mapping[str, Any],
) -> list[StreamAppend]:
    """Entries and exits for ``seg`` at ``at`` over every contact; memberships and timers
    written. The segment's timers are taken first, so a timer firing meanwhile is waited for
    (its membership write is then seen) or skipped (it fires again under the new rule)."""
    sid = uuid.UUID(seg.segment_id)
    await conn.execute("DELETE FROM timers WHERE segment_id = $1", sid)
    sql, params = members_query(seg.rule, at)
    chosen = {str(r[0]) for r in await conn.fetch(sql, *params)}
    current = {
        str(r[0])
        for r in await conn.fetch(
            "SELECT contact_id FROM memberships WHERE segment_key = $1", seg.key
        )
    }
    enter, leave = sorted(chosen - current), sorted(current - chosen)
    await conn.executemany(
        "INSERT INTO memberships (segment_key, contact_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(seg.key, uuid.UUID(c)) for c in enter],
    )
    await conn.executemany(
        "DELETE FROM memberships WHERE segment_key = $1 AND contact_id = $2",
        [(seg.key, uuid.UUID(c)) for c in leave],
    )
    if FactGroup.TIME in seg.groups:
        await _timers(conn, seg, at)
    changes = [m.Change(c, seg.ref, True) for c in enter]
    changes += [m.Change(c, seg.ref, False) for c in leave]
    return m.membership_appends(changes, cause, cause_id, at, meta)


async def _timers(conn: asyncpg.Connection, seg: m.ActiveSegment, at: datetime) -> None:
    after = uuid.UUID(int=0)
    while True:
        ids = await conn.fetch(
            "SELECT contact_id FROM contacts WHERE contact_id > $1 ORDER BY contact_id LIMIT $2",
            after,
            CHUNK,
        )
        if not ids:
            return
        facts = await load_facts(conn, [str(r[0]) for r in ids])
        due = []
        for cid, f in facts.items():
            flip = rules.next_change(seg.rule, f, at)
            if flip is not None:
                due.append((uuid.UUID(seg.segment_id), uuid.UUID(cid), flip))
        await conn.executemany(
            """INSERT INTO timers (segment_id, contact_id, due_at) VALUES ($1, $2, $3)
               ON CONFLICT (segment_id, contact_id) DO UPDATE SET due_at = excluded.due_at""",
            due,
        )
        after = ids[-1][0]
