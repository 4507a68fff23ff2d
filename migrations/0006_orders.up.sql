-- Orders and their lines (POST /v1/orders, actors/_orders.py). Money is integer pence:
-- total = subtotal + VAT (20 %), checked here. An order waits in PENDING_PAYMENT until
-- a verified Stripe event moves it; its PaymentIntent is recorded once (UNIQUE), and
-- the Idempotency-Key it was placed with finds it again (a retry after Stripe failed).
CREATE TABLE orders (
    id                UUID PRIMARY KEY,
    reference         TEXT NOT NULL UNIQUE,
    status            TEXT NOT NULL CHECK (status IN
                          ('PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'REFUNDED')),
    subtotal_pence    INTEGER NOT NULL CHECK (subtotal_pence > 0),
    vat_pence         INTEGER NOT NULL CHECK (vat_pence >= 0),
    total_pence       INTEGER NOT NULL CHECK (total_pence = subtotal_pence + vat_pence),
    currency          TEXT NOT NULL DEFAULT 'GBP' CHECK (currency = 'GBP'),
    customer_name     TEXT NOT NULL,
    customer_email    TEXT NOT NULL,
    customer_phone    TEXT NOT NULL,
    customer_postcode TEXT NOT NULL,
    idempotency_key   TEXT NOT NULL UNIQUE,
    request_hash      BYTEA NOT NULL,
    payment_intent_id TEXT UNIQUE,
    client_secret     TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'PENDING_PAYMENT';

CREATE TABLE order_lines (
    order_id         UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          SMALLINT NOT NULL CHECK (line_no >= 1),
    product_id       TEXT NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price_pence INTEGER NOT NULL CHECK (unit_price_pence > 0),
    PRIMARY KEY (order_id, line_no)
);
