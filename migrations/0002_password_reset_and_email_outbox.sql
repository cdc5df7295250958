-- 0002: password reset and outgoing e-mail.
-- Why: people who forget their password need a way back that does not reveal which e-mails have
-- accounts. The API only records the request (the same work whether or not the account exists);
-- a background worker turns it into a single-use token and an e-mail. E-mails are queued in the
-- same transaction as what caused them (an outbox), so a crash neither sends a mail for something
-- that did not happen nor loses one for something that did.

CREATE TABLE password_reset_requests (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL CHECK (length(email) <= 254),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE password_reset_tokens (
    -- Only the SHA-256 of the token is stored: a database reader cannot use it.
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX password_reset_tokens_user ON password_reset_tokens (user_id);

CREATE TABLE email_outbox (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    to_address      text NOT NULL,
    template        text NOT NULL,
    locale          text NOT NULL CHECK (locale IN ('ru', 'en')),
    subject         text NOT NULL,
    -- Cleared once sent: a reset link must not outlive its delivery in the database.
    body_text       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text
);
CREATE INDEX email_outbox_pending ON email_outbox (next_attempt_at) WHERE sent_at IS NULL;
