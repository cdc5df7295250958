-- 0006: rentals ("rents"), their history, and the bookings that hold a listing's units.
-- Why: a rental's lifecycle and its listing's calendar must change together (a declined request
-- frees its dates in the same commit), so rentals are written by the listing's entity actor
-- (actors/listing.py with actors/rental_machine.py). Every booked unit of a quantity-N listing is
-- a row in `bookings`, and an exclusion constraint makes an overlap on one unit impossible to
-- store, whatever a bug or a bypassing writer tries. Transitions are kept forever for both parties.

CREATE TABLE rentals (
    id                  uuid PRIMARY KEY,
    listing_id          uuid NOT NULL REFERENCES listings (id),
    renter_id           uuid NOT NULL REFERENCES users (id),
    owner_id            uuid NOT NULL REFERENCES users (id),
    status              text NOT NULL CHECK (status IN
                        ('requested', 'accepted', 'declined', 'cancelled', 'expired', 'active', 'overdue',
                         'returned', 'completed')),
    rental_unit         text NOT NULL CHECK (rental_unit IN ('day', 'hour')),
    quantity            integer NOT NULL CHECK (quantity >= 1),
    -- The rented period [start_at, end_at); the units stay held until `held_until` (end plus the
    -- listing's turnaround buffer, or earlier after an early return).
    start_at            timestamptz NOT NULL,
    end_at              timestamptz NOT NULL CHECK (end_at > start_at),
    held_until          timestamptz NOT NULL,
    unit_numbers        integer[] NOT NULL,
    -- Line items, discount, platform fee, deposit and totals in kopecks, as quoted (and requoted
    -- by an extension); the cancellation tiers are copied here at booking time.
    quote               jsonb NOT NULL,
    total               bigint NOT NULL CHECK (total >= 0),
    expires_at          timestamptz,
    -- Everything else the machine keeps: handover code, extension request, cancellation,
    -- late fee, timestamps of each step.
    details             jsonb NOT NULL DEFAULT '{}',
    version             bigint NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rentals_renter ON rentals (renter_id, created_at DESC);
CREATE INDEX rentals_owner ON rentals (owner_id, created_at DESC);
-- What a listing's entity loads on activation: its rentals that can still change.
CREATE INDEX rentals_open ON rentals (listing_id)
    WHERE status IN ('requested', 'accepted', 'active', 'overdue', 'returned');
-- The bounded number of open requests per renter is counted here.
CREATE INDEX rentals_renter_requested ON rentals (renter_id) WHERE status = 'requested';

CREATE TABLE rental_transitions (
    rental_id   uuid NOT NULL REFERENCES rentals (id),
    seq         integer NOT NULL CHECK (seq >= 1),
    command     text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    -- Who fired it: a user id, or null for the system (timers).
    actor_id    uuid REFERENCES users (id),
    actor_role  text NOT NULL CHECK (actor_role IN ('renter', 'owner', 'moderator', 'system')),
    data        jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL,
    PRIMARY KEY (rental_id, seq)
);

CREATE TABLE bookings (
    rental_id  uuid NOT NULL REFERENCES rentals (id),
    listing_id uuid NOT NULL REFERENCES listings (id),
    unit_no    integer NOT NULL CHECK (unit_no >= 1),
    -- [start, held_until): the rented time plus the turnaround buffer.
    period     tstzrange NOT NULL CHECK (NOT isempty(period)),
    PRIMARY KEY (rental_id, unit_no),
    -- Checked at commit: a group commit stores a listing's calendar changes in any order (freed
    -- units before or after the booking that takes them); what commits never overlaps.
    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (listing_id WITH =, unit_no WITH =, period WITH &&)
        DEFERRABLE INITIALLY DEFERRED
);
