-- The intake's own tables (services/notifications/README.md, "Intake"): bounces, complaints and
-- SMS status callbacks. Written in the event store's transaction with the event they go with.
CREATE SCHEMA IF NOT EXISTS notifications_intake;

-- The SMS gateway's id of each message it accepted (MessageSent.provider_id), written with the
-- MessageSent event: a status callback names the gateway's id, this finds our message.
CREATE TABLE notifications_intake.provider_ids (
    provider_id text PRIMARY KEY,
    message_id  uuid NOT NULL,
    contact_id  uuid                       -- NULL for a test message
);
CREATE INDEX provider_ids_contact ON notifications_intake.provider_ids (contact_id);

-- Soft bounces per contact and channel (one per message): the third within 7 days suppresses.
CREATE TABLE notifications_intake.soft_bounces (
    contact_id  uuid        NOT NULL,
    channel     text        NOT NULL,
    message_id  uuid        NOT NULL,
    bounced_at  timestamptz NOT NULL,
    PRIMARY KEY (contact_id, channel, message_id)
);
