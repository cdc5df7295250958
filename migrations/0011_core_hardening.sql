-- 0011: core hardening before money flows through the same paths.
-- Why, part by part:
-- 1. An Idempotency-Key whose request failed on our side stays bound to that request. Creating
--    routes now name what they create after (caller, key, request), so a retry after a lost answer
--    finds the first outcome instead of creating a second rental. Deleting the key on a 5xx (as
--    before) would let a *different* request reuse it meanwhile; a `failed` key admits only the
--    same request again (same hash) and still refuses others with 422.
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_state_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_state_check
    CHECK (state IN ('in_progress', 'done', 'failed'));

-- 2. Until payments hold dates with money, a renter may hold only a bounded number of rentals that
--    have not started (requested *or* accepted - instant book starts accepted), in all and per
--    listing. The cap is counted before every booking request, here.
DROP INDEX rentals_renter_requested;
CREATE INDEX rentals_renter_unstarted ON rentals (renter_id, start_at)
    WHERE status IN ('requested', 'accepted');

-- 3. Consumers' dedup records are purged past the redelivery horizon (sharehub/workers.py).
CREATE INDEX consumed_events_age ON consumed_events (consumed_at);
