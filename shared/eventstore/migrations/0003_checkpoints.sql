-- Signed checkpoints (docs/architecture.md §2a): as of `position`, the log held `streams` streams
-- whose heads make the Merkle root `root`; `previous` is the SHA-256 of the previous
-- checkpoint's signed payload; `signature` is Ed25519 over this one's (see
-- shared/eventstore/audit/checkpoints.py for the canonical bytes). Written by one checkpoint
-- writer at a time (an advisory lock), never changed.
CREATE TABLE eventstore.checkpoints (
    number     bigint      PRIMARY KEY CHECK (number > 0),
    position   bigint      NOT NULL,
    time       timestamptz NOT NULL,
    streams    bigint      NOT NULL,
    root       bytea       NOT NULL,
    previous   bytea       NOT NULL,
    key_id     text        NOT NULL,
    public_key bytea       NOT NULL,
    signature  bytea       NOT NULL
);

CREATE FUNCTION eventstore.reject_checkpoint_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventstore.checkpoints is append-only: % rejected', TG_OP
        USING ERRCODE = 'CR003';
END $$;

CREATE TRIGGER checkpoints_append_only_rows BEFORE UPDATE OR DELETE ON eventstore.checkpoints
    FOR EACH ROW EXECUTE FUNCTION eventstore.reject_checkpoint_change();
CREATE TRIGGER checkpoints_append_only_truncate BEFORE TRUNCATE ON eventstore.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.reject_checkpoint_change();
