-- 0012: outbox events no stream takes are set aside, not retried forever.
-- Why: the relay publishes the oldest unpublished events first; one whose subject no JetStream
-- stream captures (a misconfigured stream, a kind added without its subject) failed its batch
-- every round and so held back every event behind it - no notification, no live update, no
-- search refresh for anyone. The relay now marks such an event `unroutable` (and published, so
-- it leaves the queue and is purged like the others); `sharehub_outbox_unroutable_total` counts
-- them and the log names their subjects. An operator who fixes the stream can publish them
-- again by clearing `published_at` where `unroutable`.

ALTER TABLE outbox ADD COLUMN unroutable boolean NOT NULL DEFAULT false;
CREATE INDEX outbox_unroutable ON outbox (created_at) WHERE unroutable;
