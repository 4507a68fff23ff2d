-- Stripe events already processed (POST /v1/webhooks/stripe): an event's effect and
-- its row commit together, so a redelivered or concurrent duplicate changes nothing.
CREATE TABLE stripe_events (
    id                TEXT PRIMARY KEY,
    type              TEXT NOT NULL,
    payment_intent_id TEXT,
    received_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_received ON stripe_events (received_at);
