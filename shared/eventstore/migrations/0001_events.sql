-- The append-only event log (ARCHITECTURE §5).
--
-- Global order without gaps for readers, with concurrent writers: an event's position is its
-- writing transaction's 64-bit id (xid8) shifted left by 20 bits, plus its index within that
-- transaction. Readers only see positions below `xmin(current snapshot) << 20`: every
-- transaction with a lower id has ended, so nothing can later commit below that horizon, and a
-- reader paging `position > last_seen` never skips an event. Positions are sparse.
CREATE SCHEMA IF NOT EXISTS eventstore;

CREATE TABLE eventstore.events (
    position    bigint      PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    stream_id   text        NOT NULL,
    category    text        NOT NULL,
    version     bigint      NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL,
    hash        bytea       NOT NULL,  -- sha256(previous hash in stream || canonical content)
    UNIQUE (stream_id, version)
);
CREATE INDEX events_category_position ON eventstore.events (category, position);

-- One row per stream: its last version and hash. Its row lock serialises writers of one
-- stream (and only of that stream).
CREATE TABLE eventstore.streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL,
    last_hash bytea  NOT NULL
);

CREATE FUNCTION eventstore.reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventstore.events is append-only: % rejected', TG_OP
        USING ERRCODE = 'CR003';
END $$;

CREATE TRIGGER events_append_only_rows BEFORE UPDATE OR DELETE ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.reject_change();
CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON eventstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.reject_change();

-- The canonical bytes an event's hash covers; verify() recomputes the same in Python.
CREATE FUNCTION eventstore.event_hash(
    prev bytea, p_id uuid, p_stream text, p_version bigint, p_type text,
    p_data jsonb, p_meta jsonb, p_at timestamptz
) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(prev || convert_to(concat_ws(E'\n', p_id::text, p_stream, p_version::text, p_type,
        p_data::text, p_meta::text,
        (extract(epoch FROM p_at) * 1000000)::bigint::text), 'UTF8'))
$$;

-- Append events to one stream. p_expected: >= 0 exact version, -1 no stream, -2 any, -4 exists.
-- Returns one row per event. o_existing is true when every id was already stored with the same
-- content (an idempotent retry): nothing is written then.
CREATE FUNCTION eventstore.append(
    p_stream text, p_expected bigint, p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[]
) RETURNS TABLE (o_version bigint, o_position bigint, o_existing boolean)
LANGUAGE plpgsql AS $$
DECLARE
    n        int := cardinality(p_ids);
    v_ver    bigint;
    v_hash   bytea;
    v_found  int;
    v_same   int;
    v_base   bigint;
    v_pos    bigint;
    v_at     timestamptz := now();
    v_hashes bytea[] := '{}';
    i        int;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RAISE EXCEPTION 'append needs at least one event' USING ERRCODE = '22023';
    END IF;
    -- Lock the stream row (creating it if needed): writers of one stream queue here.
    SELECT s.version, s.last_hash INTO v_ver, v_hash FROM eventstore.streams s
        WHERE s.stream_id = p_stream FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO eventstore.streams (stream_id, version, last_hash)
            VALUES (p_stream, -1, ''::bytea) ON CONFLICT DO NOTHING;
        SELECT s.version, s.last_hash INTO v_ver, v_hash FROM eventstore.streams s
            WHERE s.stream_id = p_stream FOR UPDATE;
    END IF;
    -- Idempotency by event id (checked under the lock, so a racing retry sees the winner).
    SELECT count(*), count(*) FILTER (WHERE e.stream_id = p_stream AND e.type = p_types[x.ord]
                                        AND e.data = p_data[x.ord])
        INTO v_found, v_same
        FROM unnest(p_ids) WITH ORDINALITY AS x(id, ord)
        JOIN eventstore.events e ON e.event_id = x.id;
    IF v_found > 0 THEN
        IF v_found = n AND v_same = n THEN
            RETURN QUERY SELECT e.version, e.position, true FROM eventstore.events e
                WHERE e.event_id = ANY (p_ids) ORDER BY e.position;
            RETURN;
        END IF;
        RAISE EXCEPTION 'event id already stored with other content' USING ERRCODE = 'CR002';
    END IF;
    IF (p_expected >= 0 AND v_ver <> p_expected) OR (p_expected = -1 AND v_ver <> -1)
        OR (p_expected = -4 AND v_ver = -1) THEN
        RAISE EXCEPTION 'wrong expected version' USING ERRCODE = 'CR001', DETAIL = v_ver::text;
    END IF;
    v_base := (pg_current_xact_id()::text::bigint) << 20;
    SELECT coalesce(max(e.position) + 1, v_base) INTO v_pos FROM eventstore.events e
        WHERE e.position >= v_base AND e.position < v_base + 1048576;
    IF v_pos + n > v_base + 1048576 THEN
        RAISE EXCEPTION 'too many events in one transaction' USING ERRCODE = '54000';
    END IF;
    FOR i IN 1..n LOOP
        v_hash := eventstore.event_hash(v_hash, p_ids[i], p_stream, v_ver + i, p_types[i],
                                        p_data[i], p_meta[i], v_at);
        v_hashes := v_hashes || v_hash;
    END LOOP;
    RETURN QUERY INSERT INTO eventstore.events
        (position, event_id, stream_id, category, version, type, data, metadata, recorded_at, hash)
        SELECT v_pos + x.ord - 1, x.id, p_stream, split_part(p_stream, '-', 1), v_ver + x.ord,
               p_types[x.ord], p_data[x.ord], p_meta[x.ord], v_at, v_hashes[x.ord]
        FROM unnest(p_ids) WITH ORDINALITY AS x(id, ord)
        RETURNING version, position, false;
    UPDATE eventstore.streams SET version = v_ver + n, last_hash = v_hash
        WHERE stream_id = p_stream;
    PERFORM pg_notify('crm_events', (v_pos + n - 1)::text);
END $$;
