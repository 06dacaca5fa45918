-- A started campaign's recipients: the audience frozen at its start, each contact's variant
-- (or "holdout") and send instant, written with CampaignStarted in one transaction; the
-- campaign engine marks each done with its outcome (sent, skipped, deferred, held_out,
-- failed, cancelled). Here, not in a read model, so a rebuild never drops a recipient.
CREATE TABLE notifications_pipeline.campaign_recipients (
    campaign_id uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    variant     text        NOT NULL,
    due_at      timestamptz NOT NULL,
    done_at     timestamptz,
    outcome     text        NOT NULL DEFAULT '',
    PRIMARY KEY (campaign_id, contact_id)
);
CREATE INDEX campaign_recipients_due ON notifications_pipeline.campaign_recipients
    (campaign_id, due_at) WHERE done_at IS NULL;
CREATE INDEX campaign_recipients_done ON notifications_pipeline.campaign_recipients
    (campaign_id, done_at) WHERE done_at IS NOT NULL;
