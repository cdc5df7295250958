-- 0003: the entity runtime (actors/): shard leases with fencing epochs, processed commands, and
-- the transactional outbox.
-- Why: listings, rentals and chat rooms are each owned by one shard actor at a time, but a runtime
-- can briefly run two owners during failures (a zombie process, a restart racing its old self). So
-- every entity write checks, in its own transaction, that its shard's lease epoch is still the
-- writer's; a command id is stored with its result so a retried command returns the first answer;
-- and events are written to the outbox in the same transaction, then relayed to NATS JetStream.

CREATE TABLE shard_leases (
    -- A fleet is one set of shard actors hosting one set of entity kinds ("entities" in a
    -- deployment); two fleets never host the same kind, so their leases are independent.
    fleet         text NOT NULL,
    logical_shard integer NOT NULL CHECK (logical_shard >= 0),
    -- "<actor name>/<incarnation uuid>": a restarted actor is a new owner with a new epoch.
    owner         text NOT NULL,
    epoch         bigint NOT NULL CHECK (epoch > 0),
    acquired_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fleet, logical_shard)
);

CREATE TABLE processed_commands (
    command_id  uuid PRIMARY KEY,
    entity_kind text NOT NULL,
    entity_id   text NOT NULL,
    result      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_commands_age ON processed_commands (created_at);

CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    -- e.g. listing.<id>.updated, rental.<id>.state_changed (documented in api/asyncapi.yaml)
    subject      text NOT NULL,
    entity_kind  text NOT NULL,
    entity_id    text NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL;

-- Consumers record what they processed, so a redelivered event has no second effect.
CREATE TABLE consumed_events (
    consumer    text NOT NULL,
    event_id    uuid NOT NULL,
    consumed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
