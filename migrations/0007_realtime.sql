-- 0007: realtime - channel sequences over the outbox, chat rooms, in-app notifications.
-- Why: a websocket client that reconnects says "I have seen channel X up to seq N" and must get
-- exactly what it missed. So every event gets a gap-free sequence number per channel (the entity
-- it is about), assigned in the transaction that writes it, and the outbox - already every event
-- in commit order - is the store `since` replays from. `epoch` changes when a channel's history
-- is reset (its head row deleted), so a client holding seqs of the old history notices.

CREATE TABLE channel_heads (
    entity_kind text NOT NULL,
    entity_id   text NOT NULL,
    seq         bigint NOT NULL CHECK (seq >= 0),
    epoch       text NOT NULL DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 8),
    PRIMARY KEY (entity_kind, entity_id)
);

ALTER TABLE outbox ADD COLUMN seq bigint;
-- Rows written before this migration have no seq and are never replayed.
CREATE UNIQUE INDEX outbox_channel_seq ON outbox (entity_kind, entity_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX outbox_published_age ON outbox (published_at) WHERE published_at IS NOT NULL;

-- One room per (listing, renter): the inquiry before a booking, the rentals' room after it. The
-- id is derived from the pair (actors/chat.py), so opening a room twice is the same room.
CREATE TABLE chat_rooms (
    id               uuid PRIMARY KEY,
    listing_id       uuid NOT NULL REFERENCES listings (id),
    owner_id         uuid NOT NULL REFERENCES users (id),
    renter_id        uuid NOT NULL REFERENCES users (id),
    -- The latest rental of this pair, once there is one.
    rental_id        uuid,
    last_seq         bigint NOT NULL DEFAULT 0,
    -- "Read up to" message seq per participant.
    owner_read_seq   bigint NOT NULL DEFAULT 0,
    renter_read_seq  bigint NOT NULL DEFAULT 0,
    last_message_at  timestamptz,
    last_preview     text,
    version          bigint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (listing_id, renter_id),
    CHECK (owner_id <> renter_id)
);
CREATE INDEX chat_rooms_owner ON chat_rooms (owner_id, last_message_at DESC NULLS LAST);
CREATE INDEX chat_rooms_renter ON chat_rooms (renter_id, last_message_at DESC NULLS LAST);

CREATE TABLE chat_messages (
    room_id        uuid NOT NULL REFERENCES chat_rooms (id),
    seq            bigint NOT NULL CHECK (seq > 0),
    -- NULL for system messages (a rental's transitions).
    sender_id      uuid REFERENCES users (id),
    client_msg_id  text,
    kind           text NOT NULL CHECK (kind IN ('text', 'system')),
    body           text NOT NULL,
    -- Media ids (attachments) and, for system messages, the event they describe.
    data           jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (room_id, seq),
    UNIQUE (room_id, sender_id, client_msg_id)
);

-- In-app notifications: made from domain events by the notifications consumer, pushed live on
-- the user's channel (the outbox, kind "user"), listed and marked read over REST.
CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    type        text NOT NULL,
    -- What to show and where to go: ids of the listing / rental / chat, numbers, titles.
    data        jsonb NOT NULL,
    -- The domain event it came from: a redelivered event makes no second notification.
    source_event uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz,
    UNIQUE (user_id, source_event, type)
);
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
