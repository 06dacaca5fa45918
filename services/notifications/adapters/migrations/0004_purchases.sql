-- The cart or order a message is about (SendMessage's cart_id / order_id), kept with a deferred
-- decision so that the decision taken later reads them again.
ALTER TABLE notifications_pipeline.timers
    ADD COLUMN cart_id text NOT NULL DEFAULT '',
    ADD COLUMN order_id text NOT NULL DEFAULT '';
