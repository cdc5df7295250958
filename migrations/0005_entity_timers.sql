-- 0005: durable entity timers.
-- Why: rentals expire when not answered, become overdue, complete after an inspection window.
-- Such deadlines must survive restarts and fire exactly once, so they are rows written in the
-- same transaction as the decision that set them, fired by the shard that owns the entity as an
-- ordinary command (with the timer's own command id, so a second firing returns the first result).

CREATE TABLE entity_timers (
    fleet         text NOT NULL,
    logical_shard integer NOT NULL,
    entity_kind   text NOT NULL,
    entity_id     text NOT NULL,
    name          text NOT NULL,
    fire_at       timestamptz NOT NULL,
    command_id    uuid NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (entity_kind, entity_id, name)
);
CREATE INDEX entity_timers_due ON entity_timers (fleet, logical_shard, fire_at);
