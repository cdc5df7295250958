-- 0010: consumer positions - domain-event consumers apply each entity's events in order.
-- Why: every gateway process pulls the same durable JetStream consumers and the relay publishes
-- concurrently, so two events about one entity can be handled at once in two processes, or the
-- later one first (a rental's "cancelled" stored in its chat before "accepted"). Every event
-- carries its channel's gap-free seq (0007), so a consumer applies a channel's events in seq
-- order: this table holds, per (consumer, channel), the last seq applied. The row is locked while
-- an event is applied, so two processes racing on one entity take turns, and an event whose
-- predecessor is not applied yet is put back (sharehub/consumers.py).

CREATE TABLE consumer_positions (
    consumer      text NOT NULL,
    entity_kind   text NOT NULL,
    entity_id     text NOT NULL,
    -- The channel's history (channel_heads.epoch) `seq` counts in; a reset channel starts at 0.
    epoch         text NOT NULL,
    -- The last seq applied (or given up on).
    seq           bigint NOT NULL CHECK (seq >= 0),
    -- Failed attempts at the channel's next event: the give-up count, shared by every process
    -- (JetStream's delivery count also counts the times an event came too early).
    failing_seq   bigint,
    failures      integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    -- Since when a later event has been waiting for an earlier one that does not arrive.
    waiting_since timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, entity_kind, entity_id)
);
CREATE INDEX consumer_positions_age ON consumer_positions (updated_at);

-- When each consumer started applying in order. Events published before it were handled
-- without positions (or, for a consumer created later, never delivered to it): nothing waits
-- for them.
CREATE TABLE consumer_horizons (
    consumer text PRIMARY KEY,
    since    timestamptz NOT NULL DEFAULT now()
);
