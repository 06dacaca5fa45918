-- The effects of flow runs still to carry out (sends, tags, webhooks): an outbox written with
-- the run's events by the flow engine and its timers, emptied by the one effects worker. Here,
-- not in the engine's schema, so that a rebuild of the engine (side by side, then swapped)
-- never drops an effect not yet carried out.
CREATE TABLE notifications_pipeline.flow_effects (
    id         bigserial   PRIMARY KEY,
    run_id     uuid        NOT NULL,
    request_id text        NOT NULL UNIQUE,
    effect     jsonb       NOT NULL,
    due_at     timestamptz NOT NULL,
    attempts   int         NOT NULL DEFAULT 0,
    error      text        NOT NULL DEFAULT ''
);
CREATE INDEX flow_effects_due ON notifications_pipeline.flow_effects (due_at) WHERE error = '';
