-- 0009: durable timers get attempts, backoff and a dead-letter state (issue 13, section 4).
-- Why: a timer whose command kept failing (a bug in an entity, a value the database refuses)
-- stayed due and re-fired on every poll, and 100 such timers filled the poll's LIMIT 100, so no
-- timer due after them ever fired. Now each failure counts an attempt and moves `retry_at` back
-- exponentially (actors/timer_policy.py); after the last attempt the timer is `dead`: kept for
-- admins to see and re-arm, never fired again on its own. `fire_at` stays what the entity asked
-- for. A storage outage moves `retry_at` without counting an attempt.

ALTER TABLE entity_timers
    ADD COLUMN state             text NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'dead')),
    ADD COLUMN attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When a failed timer is tried next; NULL: at fire_at.
    ADD COLUMN retry_at          timestamptz,
    ADD COLUMN last_error_code   text,
    ADD COLUMN last_error_detail text,
    ADD COLUMN last_failed_at    timestamptz,
    ADD COLUMN dead_at           timestamptz,
    ADD CONSTRAINT entity_timers_dead_at CHECK ((state = 'dead') = (dead_at IS NOT NULL));

-- The due poll reads live timers only, in the order they are next due: dead timers never reach
-- it, however many there are.
DROP INDEX entity_timers_due;
CREATE INDEX entity_timers_due ON entity_timers (fleet, logical_shard, (coalesce(retry_at, fire_at)))
    WHERE state = 'live';
-- Timers that have failed (backing off or dead) are few: admins list them, shards count the dead.
CREATE INDEX entity_timers_failed ON entity_timers (last_failed_at) WHERE last_failed_at IS NOT NULL;
