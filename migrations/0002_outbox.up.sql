-- The transactional outbox and the idempotency record of job handlers (adapters/_outbox.py).
--
-- outbox: a job written in the same transaction as the business rows it belongs to,
-- waiting for the relay to hand it to the job queue. The relay reads it in id order
-- (SELECT ... ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED), which walks the primary
-- key's b-tree: that index is the relay-order index (a second index on id would only
-- cost writes).
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT
);

-- job_effects: one row per side effect a job handler committed, so a redelivered job
-- (at-least-once queue) commits each side effect exactly once.
CREATE TABLE job_effects (
    job_id TEXT,
    effect TEXT,
    recorded_at TIMESTAMPTZ DEFAULT now(),
    PRIMARY KEY (job_id, effect)
);
