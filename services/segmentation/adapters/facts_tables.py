"""The facts tables: domain/facts.py as rows, for the bulk (SQL) evaluator.

One row per contact in ``contacts`` and one per order, purchased SKU and cart in the child
tables, all keyed by the contact the facts count for now (a merged contact's orders count for
the survivor; ``origin_contact_id`` keeps whose they were, for an unmerge). ``memberships``
holds the current members of every segment, for ``in_segment``.

Attribute values are typed JSON: ``{"s": text}``, ``{"n": number}``, ``{"b": bool}`` or
``{"t": RFC 3339 UTC text}``, so SQL compares them as what they are.
"""

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
"""
