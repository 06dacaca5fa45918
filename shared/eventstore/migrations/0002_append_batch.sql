-- Many streams in one call (imports, multi-stream commands): one probe per stream for its head,
-- one loop for versions and hash chains, one INSERT. Arrays are per event; each stream's events
-- must be contiguous, and p_expected holds the stream's expected version on each of its events.
CREATE FUNCTION eventstore.append_batch(
    p_streams text[], p_expected bigint[], p_ids uuid[], p_types text[], p_data jsonb[],
    p_meta jsonb[]
) RETURNS TABLE (o_stream text, o_version bigint, o_position bigint, o_recorded_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    n         int := cardinality(p_ids);
    v_names   text[];
    v_heads   bigint[];
    v_hashes0 bytea[];
    v_vers    bigint[];
    v_hashes  bytea[];
    v_cur     text := NULL;
    v_ver     bigint;
    v_hash    bytea;
    v_k       int;
    v_next    int;
    v_pos     bigint;
    v_at      timestamptz := now();
    i         int;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RAISE EXCEPTION 'append needs at least one event' USING ERRCODE = '22023';
    END IF;
    -- Heads in order of first appearance, so the loop below finds the k-th stream at index k.
    -- (Arrays are preallocated and assigned in place: appending copies, which is quadratic.)
    SELECT array_agg(s.name ORDER BY s.first), array_agg(coalesce(h.version, -1) ORDER BY s.first),
           array_agg(coalesce(h.hash, ''::bytea) ORDER BY s.first)
        INTO v_names, v_heads, v_hashes0
        FROM (SELECT x AS name, min(o) AS first FROM unnest(p_streams) WITH ORDINALITY u(x, o)
              GROUP BY x) s
        LEFT JOIN LATERAL (SELECT e.version, e.hash FROM eventstore.events e
                           WHERE e.stream_id = s.name ORDER BY e.version DESC LIMIT 1) h ON true;
    v_vers := array_fill(0::bigint, ARRAY[n]);
    v_hashes := array_fill(''::bytea, ARRAY[n]);
    v_k := 0;
    FOR i IN 1..n LOOP
        IF v_cur IS DISTINCT FROM p_streams[i] THEN
            v_cur := p_streams[i];
            v_k := v_k + 1;
            IF v_k > cardinality(v_names) OR v_names[v_k] <> v_cur THEN
                RAISE EXCEPTION 'events of one stream must be contiguous' USING ERRCODE = '22023';
            END IF;
            v_ver := v_heads[v_k];
            v_hash := v_hashes0[v_k];
            IF (p_expected[i] >= 0 AND v_ver <> p_expected[i])
               OR (p_expected[i] = -1 AND v_ver <> -1) OR (p_expected[i] = -4 AND v_ver = -1) THEN
                RAISE EXCEPTION 'wrong expected version' USING ERRCODE = 'CR001',
                    DETAIL = v_ver::text, HINT = v_cur;
            END IF;
        END IF;
        v_ver := v_ver + 1;
        v_hash := eventstore.event_hash(v_hash, p_ids[i], v_cur, v_ver, p_types[i], p_data[i],
                                        p_meta[i], v_at);
        v_vers[i] := v_ver;
        v_hashes[i] := v_hash;
    END LOOP;
    v_next := coalesce(nullif(current_setting('eventstore.next_index', true), ''), '0')::int;
    IF v_next + n > 1048576 THEN
        RAISE EXCEPTION 'too many events in one transaction' USING ERRCODE = '54000';
    END IF;
    PERFORM set_config('eventstore.next_index', (v_next + n)::text, true);
    v_pos := ((pg_current_xact_id()::text::bigint) << 20) + v_next;
    RETURN QUERY INSERT INTO eventstore.events
        (position, event_id, stream_id, category, version, type, data, metadata, recorded_at, hash)
        SELECT v_pos + x.ord - 1, x.id, p_streams[x.ord], split_part(p_streams[x.ord], '-', 1),
               v_vers[x.ord], p_types[x.ord], p_data[x.ord], p_meta[x.ord], v_at, v_hashes[x.ord]
        FROM unnest(p_ids) WITH ORDINALITY AS x(id, ord)
        RETURNING stream_id, version, position, recorded_at;
END $$;
