-- The catalogue: kitchen and bedroom ranges. Money is integer pence (GBP) end to end;
-- an inactive product is no longer sold (and not listed) but stays for past orders.
CREATE TABLE products (
    id          TEXT PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,63}$'),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    category    TEXT NOT NULL CHECK (category IN ('KITCHEN', 'BEDROOM')),
    description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    price_pence INTEGER NOT NULL CHECK (price_pence > 0),
    currency    TEXT NOT NULL DEFAULT 'GBP' CHECK (currency = 'GBP'),
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX products_listed ON products (category, name) WHERE active;
