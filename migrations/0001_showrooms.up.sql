-- Showrooms customers book appointments at.
CREATE TABLE showrooms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    city TEXT NOT NULL,
    postcode TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'Europe/London',
    opening_hours JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
