-- The append-only event log (docs/architecture.md §2).
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
) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    -- plpgsql rather than SQL: a SQL function called from plpgsql is re-planned on every call.
    RETURN sha256(prev || convert_to(concat_ws(E'\n', p_id::text, p_stream, p_version::text,
        p_type, p_data::text, p_meta::text,
        (extract(epoch FROM p_at) * 1000000)::bigint::text), 'UTF8'));
END $$;

-- Append events to one stream. p_expected: >= 0 exact version, -1 no stream, -2 any, -4 exists.
-- Returns one row per event.
-- Concurrency: the unique (stream_id, version) index is the guard. Two writers that both read
-- version N both insert N+1; the second waits for the first and fails with a unique violation,
-- which the client maps to a wrong-expected-version conflict.
-- Idempotency: a retry of stored events fails the same way (version moved, or event_id unique);
-- only then does the client call eventstore.existing() to tell a retry from a conflict, which
-- keeps that lookup off the hot path.
CREATE FUNCTION eventstore.append(
    p_stream text, p_expected bigint, p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[]
) RETURNS TABLE (o_version bigint, o_position bigint, o_recorded_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    n        int := cardinality(p_ids);
    v_ver    bigint := -1;
    v_hash   bytea := ''::bytea;
    v_next   int;
    v_pos    bigint;
    v_at     timestamptz := now();
    v_hashes bytea[] := '{}';
    i        int;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RAISE EXCEPTION 'append needs at least one event' USING ERRCODE = '22023';
    END IF;
    SELECT e.version, e.hash INTO v_ver, v_hash FROM eventstore.events e
        WHERE e.stream_id = p_stream ORDER BY e.version DESC LIMIT 1;
    IF NOT FOUND THEN
        v_ver := -1;
        v_hash := ''::bytea;
    END IF;
    IF (p_expected >= 0 AND v_ver <> p_expected) OR (p_expected = -1 AND v_ver <> -1)
        OR (p_expected = -4 AND v_ver = -1) THEN
        RAISE EXCEPTION 'wrong expected version' USING ERRCODE = 'CR001', DETAIL = v_ver::text,
            HINT = p_stream;
    END IF;
    -- Index of the next event within this transaction: a transaction-local setting (rolled back
    -- with a savepoint, like the rows it counts).
    v_next := coalesce(nullif(current_setting('eventstore.next_index', true), ''), '0')::int;
    IF v_next + n > 1048576 THEN
        RAISE EXCEPTION 'too many events in one transaction' USING ERRCODE = '54000';
    END IF;
    PERFORM set_config('eventstore.next_index', (v_next + n)::text, true);
    v_pos := ((pg_current_xact_id()::text::bigint) << 20) + v_next;
    FOR i IN 1..n LOOP
        v_hash := eventstore.event_hash(v_hash, p_ids[i], p_stream, v_ver + i, p_types[i],
                                        p_data[i], p_meta[i], v_at);
        v_hashes := v_hashes || v_hash;
    END LOOP;
    -- No NOTIFY here: a notifying commit holds a cluster-wide lock through its WAL flush, which
    -- serialises all writers. The client notifies after commit instead (see postgres.py).
    RETURN QUERY INSERT INTO eventstore.events
        (position, event_id, stream_id, category, version, type, data, metadata, recorded_at, hash)
        SELECT v_pos + x.ord - 1, x.id, p_stream, split_part(p_stream, '-', 1), v_ver + x.ord,
               p_types[x.ord], p_data[x.ord], p_meta[x.ord], v_at, v_hashes[x.ord]
        FROM unnest(p_ids) WITH ORDINALITY AS x(id, ord)
        RETURNING version, position, recorded_at;
END $$;

-- After a failed append: are these exact events already stored (an idempotent retry)? Returns
-- their versions and positions when all are, nothing when none are; raises CR002 when some ids
-- are stored with other content or in another stream.
CREATE FUNCTION eventstore.existing(
    p_stream text, p_ids uuid[], p_types text[], p_data jsonb[]
) RETURNS TABLE (o_version bigint, o_position bigint, o_recorded_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_found int;
    v_same  int;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE e.stream_id = p_stream
                                        AND e.type = p_types[array_position(p_ids, e.event_id)]
                                        AND e.data = p_data[array_position(p_ids, e.event_id)])
        INTO v_found, v_same
        FROM eventstore.events e WHERE e.event_id = ANY (p_ids);
    IF v_found = 0 THEN
        RETURN;
    END IF;
    IF v_found <> cardinality(p_ids) OR v_same <> v_found THEN
        RAISE EXCEPTION 'event id already stored with other content' USING ERRCODE = 'CR002';
    END IF;
    RETURN QUERY SELECT e.version, e.position, e.recorded_at FROM eventstore.events e
        WHERE e.event_id = ANY (p_ids) ORDER BY e.position;
END $$;
