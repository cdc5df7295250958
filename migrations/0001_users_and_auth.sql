-- 0001: accounts and logins.
-- Why: every other module (listings, rentals, chats, payments) points at a user, and the gateway
-- needs revocable logins: each login is a refresh-token family (auth_sessions) so that replaying a
-- rotated refresh token can revoke exactly that login, and logout can kill its access tokens.

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored normalised (NFKC, trimmed, lower-cased) by the application; unique as stored.
    email         text NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254),
    password_hash text NOT NULL,
    display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 80),
    phone         text CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    bio           text NOT NULL DEFAULT '' CHECK (length(bio) <= 2000),
    city          text NOT NULL DEFAULT '' CHECK (length(city) <= 100),
    locale        text NOT NULL DEFAULT 'ru' CHECK (locale IN ('ru', 'en')),
    roles         text[] NOT NULL DEFAULT ARRAY['user']
                  CHECK (roles <@ ARRAY['user', 'owner', 'moderator', 'admin'] AND 'user' = ANY (roles)),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'banned')),
    -- Bumped when roles, status or password change: access tokens carry the epoch they were
    -- issued under and older ones stop working at once (checked through a Redis cache).
    auth_epoch    integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_sessions (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The only refresh token of this family that may still be used; rotating replaces it.
    refresh_jti       uuid NOT NULL,
    generation        integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_refreshed_at timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    revoked_at        timestamptz,
    revoked_reason    text CHECK (revoked_reason IN ('logout', 'refresh_reuse', 'password_changed',
                                                     'banned', 'revoked_by_user')),
    user_agent        text NOT NULL DEFAULT '' CHECK (length(user_agent) <= 512),
    ip                inet
);
CREATE INDEX auth_sessions_user_active ON auth_sessions (user_id) WHERE revoked_at IS NULL;

-- Idempotency-Key records for POSTs that create something. Scope is the caller (user id, or the
-- client address for anonymous calls such as registration), so keys never collide across users.
CREATE TABLE idempotency_keys (
    scope           text NOT NULL,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    operation       text NOT NULL,
    request_hash    text NOT NULL,
    state           text NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'done')),
    response_status integer,
    response_body   bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
