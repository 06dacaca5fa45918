"""The facts tables: domain/facts.py as rows, for the bulk (SQL) evaluator.

One row per contact in ``contacts`` and one per order, purchased SKU and cart in the child
tables, all keyed by the contact the facts count for now (a merged contact's orders count for
the survivor; ``origin_contact_id`` keeps whose they were, for an unmerge). ``memberships``
holds the current members of every segment, for ``in_segment``.

Attribute values are typed JSON: ``{"s": text}``, ``{"n": number}``, ``{"b": bool}`` or
``{"t": RFC 3339 UTC text}``, so SQL compares them as what they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.segmentation.domain.facts import (
    AttributeValue,
    CartFact,
    Facts,
    OrderFact,
    PurchaseFact,
    RfmScore,
)

FACTS_DDL = """
CREATE TABLE contacts (
    contact_id    uuid PRIMARY KEY,
    created_at    timestamptz,
    tags          text[]   NOT NULL DEFAULT '{}',
    locale        text     NOT NULL DEFAULT '',
    time_zone     text     NOT NULL DEFAULT '',
    email_domain  text     NOT NULL DEFAULT '',
    attributes    jsonb    NOT NULL DEFAULT '{}',
    consent       jsonb    NOT NULL DEFAULT '{}',
    suppressed    text[]   NOT NULL DEFAULT '{}',
    archived      boolean  NOT NULL DEFAULT false,
    erased        boolean  NOT NULL DEFAULT false,
    merged_into   uuid,
    bucket        smallint NOT NULL
);
CREATE TABLE orders (
    order_id          uuid PRIMARY KEY,
    contact_id        uuid        NOT NULL,
    origin_contact_id uuid        NOT NULL,
    currency          text        NOT NULL,
    total             bigint      NOT NULL,
    refunded          bigint      NOT NULL DEFAULT 0,
    place_time        timestamptz NOT NULL,
    cancelled         boolean     NOT NULL DEFAULT false
);
CREATE INDEX orders_by_contact ON orders (contact_id, place_time);
CREATE TABLE purchases (
    order_id          uuid        NOT NULL,
    sku               text        NOT NULL,
    contact_id        uuid        NOT NULL,
    origin_contact_id uuid        NOT NULL,
    quantity          integer     NOT NULL,
    time              timestamptz NOT NULL,
    PRIMARY KEY (order_id, sku)
);
CREATE INDEX purchases_by_contact ON purchases (contact_id, sku, time);
CREATE TABLE carts (
    cart_id           uuid PRIMARY KEY,
    contact_id        uuid        NOT NULL,
    origin_contact_id uuid        NOT NULL,
    abandoned_time    timestamptz,
    recovered         boolean     NOT NULL DEFAULT false
);
CREATE INDEX carts_by_contact ON carts (contact_id, abandoned_time);
CREATE TABLE memberships (
    segment_key text NOT NULL,
    contact_id  uuid NOT NULL,
    PRIMARY KEY (segment_key, contact_id)
);
CREATE INDEX memberships_by_contact ON memberships (contact_id);
CREATE TABLE segments (
    segment_id   uuid PRIMARY KEY,
    key          text    NOT NULL UNIQUE,
    rule         text    NOT NULL,
    rule_version bigint  NOT NULL,
    archived     boolean NOT NULL DEFAULT false
);
-- The next instant a relative-time condition may flip, per (segment, contact).
CREATE TABLE timers (
    segment_id uuid        NOT NULL,
    contact_id uuid        NOT NULL,
    due_at     timestamptz NOT NULL,
    PRIMARY KEY (segment_id, contact_id)
);
CREATE INDEX timers_due ON timers (due_at);
-- RFM scores per (contact, currency) at the last re-score (adapters/rfm.py).
CREATE TABLE rfm_scores (
    contact_id uuid     NOT NULL,
    currency   text     NOT NULL,
    recency    smallint NOT NULL,
    frequency  smallint NOT NULL,
    monetary   smallint NOT NULL,
    grp        text     NOT NULL,
    PRIMARY KEY (contact_id, currency)
);
"""


def _attribute(value: dict[str, Any]) -> AttributeValue:
    if "b" in value:
        return bool(value["b"])
    if "n" in value:
        return float(value["n"])
    if "t" in value:
        return datetime.fromisoformat(value["t"].replace("Z", "+00:00"))
    return str(value.get("s", ""))


_LOAD = """
SELECT c.*,
    array(SELECT row(o.order_id::text, o.currency, o.total, o.refunded, o.place_time,
                     o.cancelled)
          FROM orders o WHERE o.contact_id = c.contact_id
          ORDER BY o.place_time, o.order_id) AS order_rows,
    array(SELECT row(p.order_id::text, p.sku, p.quantity, p.time)
          FROM purchases p WHERE p.contact_id = c.contact_id
          ORDER BY p.time, p.order_id, p.sku) AS purchase_rows,
    array(SELECT row(k.cart_id::text, k.abandoned_time, k.recovered)
          FROM carts k WHERE k.contact_id = c.contact_id ORDER BY k.cart_id) AS cart_rows,
    array(SELECT m.segment_key FROM memberships m WHERE m.contact_id = c.contact_id)
        AS segment_keys,
    array(SELECT row(s.currency, s.recency, s.frequency, s.monetary, s.grp)
          FROM rfm_scores s WHERE s.contact_id = c.contact_id) AS rfm_rows
FROM contacts c WHERE c.contact_id = ANY($1::uuid[])
"""


async def load_facts(conn: asyncpg.Connection, contact_ids: Sequence[str]) -> dict[str, Facts]:
    """The facts of ``contact_ids`` (those the tables know), in one query."""
    out = {}
    for r in await conn.fetch(_LOAD, [uuid.UUID(c) for c in contact_ids]):
        cid = str(r["contact_id"])
        out[cid] = Facts(
            contact_id=cid,
            created_at=r["created_at"],
            tags=frozenset(r["tags"]),
            locale=r["locale"],
            time_zone=r["time_zone"],
            email_domain=r["email_domain"],
            attributes={k: _attribute(v) for k, v in orjson.loads(r["attributes"]).items()},
            consent=orjson.loads(r["consent"]),
            suppressed=frozenset(r["suppressed"]),
            archived=r["archived"],
            erased=r["erased"],
            merged_into=str(r["merged_into"] or ""),
            orders=tuple(OrderFact(*row) for row in r["order_rows"]),
            purchases=tuple(PurchaseFact(*row) for row in r["purchase_rows"]),
            carts=tuple(CartFact(*row) for row in r["cart_rows"]),
            segments=frozenset(r["segment_keys"]),
            rfm={row[0]: RfmScore(*row[1:]) for row in r["rfm_rows"]},
        )
    return out
