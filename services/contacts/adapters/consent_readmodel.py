"""The consent read model (schema consent_rm): one row per contact and channel with its current
consent and suppression, built by ConsentProjection from the "consent" category.

A row keeps the whole channel state (domain ChannelConsent) as JSON in ``detail``, plus the
columns an operator would filter on. The channel fold itself is the domain's ``evolve_channel``,
so the read model cannot drift from what GetConsent(as_of) computes from the stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.contacts.domain import consent as domain
from services.contacts.domain.consent import ChannelConsent, Pending, Suppression, Terms
from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext

SCHEMA = "consent_rm"

DDL = """
CREATE TABLE channels (
    contact_id         uuid        NOT NULL,
    channel            text        NOT NULL,
    state              text        NOT NULL,  -- never_subscribed, subscribed, unsubscribed
    pending_expires_at timestamptz,           -- the last double opt-in request's expiry
    suppressed         boolean     NOT NULL,
    suppression_reason text        NOT NULL,
    detail             jsonb       NOT NULL,  -- the full channel state (see _dump)
    version            bigint      NOT NULL,  -- consent stream version of the last event applied
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (contact_id, channel)
);
CREATE INDEX channels_suppressed ON channels (channel, contact_id) WHERE suppressed;
"""

# One statement per batch. The version guard makes a replayed batch change nothing.
_UPSERT = """
INSERT INTO channels AS c (contact_id, channel, state, pending_expires_at, suppressed,
                           suppression_reason, detail, version, updated_at)
SELECT r.id, r.ch, r.st, r.pe, r.su, r.sr, r.d::jsonb, r.v, r.at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::bool[], $6::text[],
            $7::text[], $8::bigint[], $9::timestamptz[]) AS r(id, ch, st, pe, su, sr, d, v, at)
ON CONFLICT (contact_id, channel) DO UPDATE SET
    state = excluded.state, pending_expires_at = excluded.pending_expires_at,
    suppressed = excluded.suppressed, suppression_reason = excluded.suppression_reason,
    detail = excluded.detail, version = excluded.version, updated_at = excluded.updated_at
WHERE c.version < excluded.version
"""


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _dump(ch: ChannelConsent) -> str:
    """JSON of the channel state. The token hash is left out: queries never need it."""
    doc: dict[str, Any] = {
        "state": ch.state,
        "terms": ch.terms.fields(),
        "changed_at": _iso(ch.changed_at),
    }
    if ch.pending is not None:
        doc["pending"] = {
            "terms": ch.pending.terms.fields(),
            "requested_at": _iso(ch.pending.requested_at),
            "expires_at": _iso(ch.pending.expires_at),
        }
    if ch.suppression is not None:
        s = ch.suppression
        doc["suppression"] = {"reason": s.reason, "note": s.note, "at": _iso(s.at)}
    return orjson.dumps(doc).decode()


def _load(channel: str, detail: Mapping[str, Any], version: int) -> ChannelConsent:
    p, s = detail.get("pending"), detail.get("suppression")
    dt = datetime.fromisoformat
    return ChannelConsent(
        channel=channel,
        state=detail["state"],
        terms=Terms.of(detail["terms"]),
        changed_at=_dt(detail.get("changed_at")),
        pending=Pending(Terms.of(p["terms"]), dt(p["requested_at"]), dt(p["expires_at"]))
        if p
        else None,
        suppression=Suppression(s["reason"], s["note"], dt(s["at"])) if s else None,
        version=version,
    )


class ConsentProjection:
    name = "consent"
    schema = SCHEMA
    ddl = DDL
    categories: Sequence[str] | None = ["consent"]
    types: Sequence[str] | None = None

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        # Read the batch's rows once, fold every event in memory, write the changed rows in one
        # statement. Events at or below a row's version were applied already (a replay).
        todo = [e for e in events if e.type in domain.TYPES]
        if not todo:
            return
        ids = list({e.data["contact_id"] for e in todo})
        rows = await conn.fetch(
            "SELECT contact_id::text, channel, detail::text, version FROM channels"
            " WHERE contact_id = ANY($1::uuid[])",
            ids,
        )
        state = {(r[0], r[1]): _load(r[1], orjson.loads(r[2]), r[3]) for r in rows}
        changed: dict[tuple[str, str], tuple[ChannelConsent, datetime]] = {}
        for e in todo:
            key = (str(uuid.UUID(e.data["contact_id"])), e.data["channel"])
            ch = state.get(key) or ChannelConsent(key[1])
            if e.version <= ch.version:
                continue
            ch = domain.evolve_channel(ch, e.type, e.data, e.recorded_at, e.version)
            state[key] = ch
            changed[key] = (ch, e.recorded_at)
        if changed:
            await conn.execute(_UPSERT, *_columns(changed))


def _columns(changed: Mapping[tuple[str, str], tuple[ChannelConsent, datetime]]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(9)]
    for (contact_id, channel), (ch, at) in changed.items():
        values = (
            contact_id,
            channel,
            ch.state,
            ch.pending.expires_at if ch.pending else None,
            ch.suppression is not None,
            ch.suppression.reason if ch.suppression else "",
            _dump(ch),
            ch.version,
            at,
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols


class ConsentReadModel:
    def __init__(self, pool: asyncpg.Pool, schema: str = SCHEMA) -> None:
        self.pool = pool
        self.table = f"{schema}.channels"

    async def get(self, contact_id: str) -> dict[str, ChannelConsent]:
        rows = await self.pool.fetch(
            f"SELECT channel, detail::text, version FROM {self.table} WHERE contact_id = $1",
            uuid.UUID(contact_id),
        )
        return {r[0]: _load(r[0], orjson.loads(r[1]), r[2]) for r in rows}

    async def get_many(self, contact_ids: list[str]) -> dict[str, dict[str, ChannelConsent]]:
        """The channels of these contacts, by contact id, in one query (a contact with no row
        is left out)."""
        rows = await self.pool.fetch(
            f"SELECT contact_id::text, channel, detail::text, version FROM {self.table}"
            " WHERE contact_id = ANY($1::uuid[])",
            [uuid.UUID(c) for c in contact_ids],
        )
        out: dict[str, dict[str, ChannelConsent]] = {}
        for r in rows:
            out.setdefault(r[0], {})[r[1]] = _load(r[1], orjson.loads(r[2]), r[3])
        return out
