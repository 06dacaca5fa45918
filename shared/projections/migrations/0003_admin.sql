-- What the Admin API (shared/admin/) reports and records about projections. Additions only: a
-- role of the previous release ignores them (docs/architecture.md §8, expand/contract).

-- Who leads each projection: written by the runner on the connection that holds the advisory
-- lock, as it takes the lock. A row is only believed while its backend still holds that lock
-- (status.py joins pg_locks), so a crashed leader's row is never reported as leading.
CREATE TABLE projections.leaders (
    name        text        PRIMARY KEY,
    host        text        NOT NULL,
    pid         int         NOT NULL,
    backend_pid int         NOT NULL,
    since       timestamptz NOT NULL DEFAULT now()
);

-- Side-by-side rebuilds an operator asked for (rebuild.py), one row per attempt. A row that says
-- 'running' while no session holds the projection's rebuild lock was interrupted (its process
-- died); asking again resumes it from the scratch schema's own checkpoint.
CREATE TABLE projections.rebuilds (
    operation_id uuid        PRIMARY KEY,
    name         text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('running', 'done', 'failed', 'interrupted')),
    phase        text        NOT NULL DEFAULT 'catching_up',
    requested_by text        NOT NULL DEFAULT '',
    host         text        NOT NULL DEFAULT '',
    pid          int         NOT NULL DEFAULT 0,
    resumed_from bigint      NOT NULL DEFAULT 0,
    position     bigint      NOT NULL DEFAULT 0,
    target       bigint      NOT NULL DEFAULT 0,
    applied      bigint      NOT NULL DEFAULT 0,
    error        text        NOT NULL DEFAULT '',
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX rebuilds_by_name ON projections.rebuilds (name, started_at DESC);

-- A parked event an operator skipped stays listed, resolved, with who and why; it no longer
-- counts as parked (crm_parked_events). A retried event that applies is deleted instead.
ALTER TABLE projections.parked
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolved_by text,
    ADD COLUMN resolution  text;
