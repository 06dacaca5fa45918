-- Projection bookkeeping: checkpoints committed with read-model writes, parked (poison) events.
CREATE SCHEMA IF NOT EXISTS projections;

CREATE TABLE projections.checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projections.parked (
    name      text        NOT NULL,
    position  bigint      NOT NULL,
    event_id  uuid        NOT NULL,
    stream_id text        NOT NULL,
    type      text        NOT NULL,
    error     text        NOT NULL,
    attempts  int         NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, event_id)
);
