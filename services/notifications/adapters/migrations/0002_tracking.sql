-- The links of tracked emails (services/notifications/README.md, "Tracking"): each http(s) link
-- of a message's HTML, by its index, as written in the template once rendered. The click
-- endpoint redirects only to a URL recorded here for the message and index its signed token
-- names (no open redirect). Written with the decision's outbox row, in the event store's
-- transaction. The URL may hold personal data (a query string with an address): keyed by
-- contact, deleted on ContactErased like the pipeline's other rows.
CREATE TABLE notifications_pipeline.links (
    message_id  uuid        NOT NULL,
    link        integer     NOT NULL,  -- the index in the message's HTML, 0 first
    contact_id  uuid,                  -- NULL for a test message
    url         text        NOT NULL,
    PRIMARY KEY (message_id, link)
);
CREATE INDEX links_contact ON notifications_pipeline.links (contact_id);
