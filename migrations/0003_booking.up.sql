-- Slot booking: consultants, their weekly hours and blocked days, appointments, and
-- the idempotency record of POST /v1/appointments (actors/_booker.py).
--
-- btree_gist lets one GiST index compare consultant ids with = next to time ranges
-- with &&: the EXCLUDE constraint below is what makes a double booking impossible,
-- whatever the caches and the Redis slot locks say.
CREATE EXTENSION IF NOT EXISTS btree_gist;

ALTER TABLE showrooms ADD COLUMN phone TEXT NOT NULL DEFAULT '';
ALTER TABLE showrooms ADD COLUMN email TEXT NOT NULL DEFAULT '';

CREATE TABLE consultants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    -- Their base: SHOWROOM appointments there; home visits and online meetings from it.
    showroom_id TEXT NOT NULL REFERENCES showrooms (id),
    -- KITCHEN and/or BEDROOM.
    specialisations TEXT[] NOT NULL,
    active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Weekly working hours in the showroom's local time (Europe/London): weekday 0 is
-- Monday (ISO weekday - 1). Slots are the whole hours inside a window.
CREATE TABLE consultant_hours (
    consultant_id TEXT NOT NULL REFERENCES consultants (id),
    weekday SMALLINT NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    starts TIME NOT NULL,
    ends TIME NOT NULL,
    PRIMARY KEY (consultant_id, weekday, starts),
    CHECK (ends > starts OR ends = '00:00')
);

-- Whole local days a consultant does not work (holidays, training).
CREATE TABLE consultant_blocked_days (
    consultant_id TEXT NOT NULL REFERENCES consultants (id),
    day DATE NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (consultant_id, day)
);

CREATE TABLE appointments (
    id UUID PRIMARY KEY,
    -- For people (support calls, emails): 40 random bits, so not a key; the id is.
    reference TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('HOME_MEASUREMENT', 'ONLINE', 'SHOWROOM')),
    category TEXT NOT NULL CHECK (category IN ('KITCHEN', 'BEDROOM', 'BOTH')),
    status TEXT NOT NULL CHECK (
        status IN ('PENDING', 'CONFIRMED', 'CANCELLED', 'COMPLETED', 'NO_SHOW', 'RESCHEDULED')
    ),
    consultant_id TEXT NOT NULL REFERENCES consultants (id),
    showroom_id TEXT REFERENCES showrooms (id),
    starts_at TIMESTAMPTZ NOT NULL,
    ends_at TIMESTAMPTZ NOT NULL,
    customer_name TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    customer_phone TEXT NOT NULL,
    customer_postcode TEXT NOT NULL,
    customer_address TEXT,
    notes TEXT,
    -- SHA-256 of the guest's manage token (the token itself is never stored here).
    manage_token_hash BYTEA NOT NULL,
    -- Why it was cancelled (by the customer, or a slot lost while it was PENDING).
    status_reason TEXT,
    previous_starts_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CONSTRAINT appointments_no_double_booking EXCLUDE USING gist (
        consultant_id WITH =, tstzrange(starts_at, ends_at) WITH &&
    ) WHERE (status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED'))
);

-- Availability reads the active bookings of a date range (the GiST index above leads
-- with the consultant).
CREATE INDEX appointments_active_starts ON appointments (starts_at)
    WHERE status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED');

-- One row per Idempotency-Key (scoped by route): the request's hash and the first
-- response, returned again to a retry. Kept at least 24 h (idempotency_keep_s).
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    request_hash BYTEA NOT NULL,
    status SMALLINT NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX appointments_reference ON appointments (reference);
