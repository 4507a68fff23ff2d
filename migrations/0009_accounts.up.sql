-- Customer accounts (POST /v1/auth/register, actors/_accounts.py). The e-mail as given
-- is kept for display; ``email_key`` (NFC, case-folded, domain in IDNA ASCII) is what
-- makes an address unique. Only an argon2id hash of the password is stored (PHC string:
-- its parameters travel with it, so a hash made with older ones is upgraded at login).
CREATE TABLE accounts (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    email_key     TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    phone         TEXT,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A booking or order made while logged in belongs to the account (guests' have none).
-- Additive: code that does not know the column writes NULL, a guest's booking.
ALTER TABLE appointments ADD COLUMN account_id UUID REFERENCES accounts (id);
CREATE INDEX appointments_account ON appointments (account_id, starts_at)
    WHERE account_id IS NOT NULL;
ALTER TABLE orders ADD COLUMN account_id UUID REFERENCES accounts (id);
CREATE INDEX orders_account ON orders (account_id, created_at)
    WHERE account_id IS NOT NULL;
