-- Per-contact data keys for crypto-shredding (contacts canvas: erasure). Outside the event log: erasing a
-- contact sets its key to NULL, after which the personal fields in its events cannot be read.
CREATE SCHEMA IF NOT EXISTS contacts_keys;

CREATE TABLE contacts_keys.data_keys (
    contact_id   uuid        PRIMARY KEY,
    key          bytea,                    -- NULL once destroyed
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CHECK ((key IS NULL) = (destroyed_at IS NOT NULL))
);
