-- The message pipeline's own tables (services/notifications/README.md, "Pipeline"). Written only
-- by commands and the dispatcher, in the event store's transaction; never by a projection, so a
-- rebuild sends nothing and schedules nothing. Personal data (addresses, rendered text, the
-- trigger's data) lives here, keyed by contact, and nowhere in the events.
CREATE SCHEMA IF NOT EXISTS notifications_pipeline;

-- Rendered messages waiting for an attempt. A row is retired (deleted) once sent or failed for
-- good. attempt: the last attempt dispatched; in_flight: dispatched with no outcome recorded
-- (in doubt once due_at, the lease's end, has passed).
CREATE TABLE notifications_pipeline.outbox (
    message_id  uuid        PRIMARY KEY,
    contact_id  uuid,                      -- NULL for a test message
    channel     text        NOT NULL,
    address     text        NOT NULL,
    sender      text        NOT NULL DEFAULT '',
    subject     text        NOT NULL DEFAULT '',
    text        text        NOT NULL DEFAULT '',
    html        text        NOT NULL DEFAULT '',
    body        text        NOT NULL DEFAULT '',
    headers     jsonb       NOT NULL DEFAULT '[]',
    test        boolean     NOT NULL DEFAULT false,
    attempt     integer     NOT NULL DEFAULT 0,
    in_flight   boolean     NOT NULL DEFAULT false,
    due_at      timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON notifications_pipeline.outbox (due_at);
CREATE INDEX outbox_contact ON notifications_pipeline.outbox (contact_id);

-- Marketing messages decided SEND, per contact and channel: the frequency cap and smart sending
-- count them, the contact locked, in the deciding transaction.
CREATE TABLE notifications_pipeline.marketing_sends (
    contact_id  uuid        NOT NULL,
    channel     text        NOT NULL,
    message_id  uuid        NOT NULL,
    sent_at     timestamptz NOT NULL,
    PRIMARY KEY (contact_id, channel, sent_at, message_id)
);

-- Where each message went (GetMessage shows it to those who may see personal data).
CREATE TABLE notifications_pipeline.recipients (
    message_id  uuid        PRIMARY KEY,
    contact_id  uuid,                      -- NULL for a test message
    address     text        NOT NULL
);
CREATE INDEX recipients_contact ON notifications_pipeline.recipients (contact_id);

-- Durable timers: a deferred message is decided again (decision number `decision`) at due_at,
-- with what its request gave (data: the trigger's data, personal).
CREATE TABLE notifications_pipeline.timers (
    message_id           uuid        PRIMARY KEY,
    decision             integer     NOT NULL,
    due_at               timestamptz NOT NULL,
    requested_contact_id uuid        NOT NULL,
    template_id          uuid        NOT NULL,
    template_version     bigint      NOT NULL,
    kind                 text        NOT NULL,
    locale               text        NOT NULL DEFAULT '',
    webhook_url          text        NOT NULL DEFAULT '',
    request_id           text        NOT NULL DEFAULT '',
    data                 jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX timers_due ON notifications_pipeline.timers (due_at);
CREATE INDEX timers_contact ON notifications_pipeline.timers (requested_contact_id);
