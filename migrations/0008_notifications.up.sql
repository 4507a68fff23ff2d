-- The notifier's records (actors/_notifier.py, adapters/_notifications.py).
--
-- notification_logs: one row per attempt to deliver one message through one provider
-- (or a decision not to send). The recipient is kept masked: the log is for support
-- and operators, the address itself is in the booking or order.
CREATE TABLE notification_logs (
    id                  BIGSERIAL PRIMARY KEY,
    job_id              TEXT NOT NULL,
    kind                TEXT NOT NULL,
    reference           TEXT NOT NULL,
    channel             TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    provider            TEXT NOT NULL,
    recipient           TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('SENT', 'FAILED', 'RETRYING', 'SKIPPED')),
    provider_message_id TEXT,
    error               TEXT,
    attempted_at        TIMESTAMPTZ NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX notification_logs_reference ON notification_logs (reference, id);
CREATE INDEX notification_logs_job ON notification_logs (job_id);

-- failed_messages: the email dead-letter store. An email no provider took waits here,
-- rendered, with every attempt's error; the 15-minute cron retries it until
-- retry_until (24 h after its first attempt), then marks it FAILED and alerts.
CREATE TABLE failed_messages (
    id               BIGSERIAL PRIMARY KEY,
    job_id           TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    reference        TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    text_body        TEXT NOT NULL,
    html_body        TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'PENDING'
                         CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED', 'SKIPPED')),
    attempts         JSONB NOT NULL DEFAULT '[]',
    retries          INTEGER NOT NULL DEFAULT 0,
    first_attempt_at TIMESTAMPTZ NOT NULL,
    retry_until      TIMESTAMPTZ NOT NULL,
    last_attempt_at  TIMESTAMPTZ NOT NULL,
    closed_at        TIMESTAMPTZ
);
CREATE INDEX failed_messages_pending ON failed_messages (first_attempt_at)
    WHERE status = 'PENDING';
