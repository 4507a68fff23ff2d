"""The orders peer: ``POST /v1/orders`` on FastAPI + uvicorn + asyncpg + stripe-python.

    DATABASE_URL=postgresql://... STRIPE_SECRET_KEY=sk_test_... STRIPE_API_BASE=http://... \\
        uvicorn bench.peers.fastapi_orders:app --loop uvloop --http httptools

The work a straightforward implementation does for one order, nothing more, nothing
less (bench/orders.py drives it next to ours, against the same local Stripe):

1. pydantic validates the body (FastAPI's way) with the rules ours applies (items: 1 to
   20, a product id pattern, quantity 1 to 100, no product twice; the customer as for a
   booking; no unknown fields); ``Idempotency-Key`` is required, scoped to the route as
   ours does it (``orders:{key}``);
2. one transaction: a key already answered replays its answer (another body: 422);
   else the order placed under that key before (a retry after Stripe failed) is read
   back, or a new one is placed at today's prices (``products``), VAT 20 % rounded half
   up, integer pence: the ``orders`` row and its ``order_lines``;
3. a PaymentIntent, ``stripe.StripeClient`` on ``stripe.HTTPXClient``,
   ``v1.payment_intents.create_async`` with Stripe Idempotency-Key ``order-{id}`` (the
   SDK's own retries: 2, as ours); Stripe failing -> 503 ``payment_unavailable`` with
   ``Retry-After: 60`` and the order waits;
4. a second transaction: the intent recorded on the order (the first one wins) and the
   201 stored under the key in ``idempotency_keys``.

The 201 is ours' shape: id, reference, status, lines, subtotal / VAT / total, currency,
the manage token (derived from the order id with an HMAC, never stored: the stored
answer holds a marker in its place, as ours) and payment {payment_intent_id,
client_secret}. Not here: ours' breaker and bulkhead around Stripe, its 429/5xx versus
declined-card split, and the replay of a concurrent duplicate still in flight (409).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import stripe
from fastapi import FastAPI, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from bench.peers.fastapi_booking import JSON, POOL_MAX, Customer, problem, reference

VAT_PERCENT = 20
MAX_TOTAL_PENCE = 99_999_999  # Stripe's largest amount
STRIPE_TIMEOUT_S = 5.0  # StripeSettings.timeout_s
STRIPE_RETRIES = 2  # StripeSettings.network_retries
RETRY_AFTER = "60"  # StripeSettings.unavailable_retry_after_s
MARKER = '"manage_token":"<manage-token>"'

READ_ANSWER = "SELECT request_hash, status, response FROM idempotency_keys WHERE key = $1"
READ_ORDER = """
SELECT id, reference, subtotal_pence, vat_pence, total_pence, request_hash
FROM orders WHERE idempotency_key = $1
"""
READ_LINES = """
SELECT product_id, quantity, unit_price_pence FROM order_lines WHERE order_id = $1 ORDER BY line_no
"""
PRICES = "SELECT id, price_pence FROM products WHERE active AND id = ANY($1::text[])"
INSERT_ORDER = """
INSERT INTO orders (id, reference, status, subtotal_pence, vat_pence, total_pence,
    customer_name, customer_email, customer_phone, customer_postcode, idempotency_key,
    request_hash)
VALUES ($1, $2, 'PENDING_PAYMENT', $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
"""
INSERT_LINES = """
INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_pence)
VALUES ($1, $2, $3, $4, $5)
"""
ATTACH_INTENT = """
UPDATE orders SET payment_intent_id = $2, client_secret = $3, updated_at = now()
WHERE id = $1 AND payment_intent_id IS NULL RETURNING id
"""
STORE_ANSWER = """
INSERT INTO idempotency_keys (key, request_hash, status, response) VALUES ($1, $2, 201, $3)
ON CONFLICT (key) DO NOTHING
"""


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    quantity: int = Field(ge=1, le=100)


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item] = Field(min_length=1, max_length=20)
    customer: Customer


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=1, max_size=POOL_MAX
    )
    http = stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_S)
    app.state.stripe = stripe.StripeClient(
        os.environ["STRIPE_SECRET_KEY"],
        http_client=http,
        base_addresses={"api": os.environ["STRIPE_API_BASE"]},
        max_network_retries=STRIPE_RETRIES,
    )
    app.state.token_key = os.environ.get("TOKEN_SECRET", "bench-peer-token-secret").encode()
    yield
    await http.close_async()  # type: ignore[no-untyped-call]
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


def reveal(stored: str, order_id: str) -> str:
    """The stored answer with the order's manage token in place of the marker."""
    digest = hmac.new(app.state.token_key, f"manage-token:{order_id}".encode(), hashlib.sha256)
    token = base64.urlsafe_b64encode(digest.digest()).decode()[:32]
    return stored.replace(MARKER, f'"manage_token":"{token}"', 1)


def replay(stored: asyncpg.Record, request_hash: bytes) -> Response:
    if stored["request_hash"] != request_hash:
        return problem(422, "idempotency_key_reused", "Another request used that key.")
    body = stored["response"]
    return Response(reveal(body, json.loads(body)["id"]), stored["status"], media_type=JSON)


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@app.post("/v1/orders", status_code=201)
async def place(
    body: OrderRequest,
    request: Request,
    idempotency_key: Annotated[str, Header(pattern=r"^[\x21-\x7e]{1,255}$")],
) -> Response:
    ids = [item.product_id for item in body.items]
    if len(set(ids)) != len(ids):
        return problem(422, "duplicate_product", "items: a product on two lines.")
    key = f"orders:{idempotency_key}"
    request_hash = hashlib.sha256(await request.body()).digest()
    c = body.customer
    compact = c.postcode.replace(" ", "").upper()
    async with app.state.pool.acquire() as connection, connection.transaction():
        stored = await connection.fetchrow(READ_ANSWER, key)
        if stored is not None:
            return replay(stored, request_hash)
        order = await connection.fetchrow(READ_ORDER, key)
        if order is not None:  # placed before, Stripe failed then: ask again
            if order["request_hash"] != request_hash:
                return problem(422, "idempotency_key_reused", "Another request used that key.")
            order_id, ref = order["id"], order["reference"]
            totals = (order["subtotal_pence"], order["vat_pence"], order["total_pence"])
            lines = [tuple(row) for row in await connection.fetch(READ_LINES, order_id)]
        else:
            prices = dict(await connection.fetch(PRICES, ids))
            if unknown := [product for product in ids if product not in prices]:
                return problem(422, "unknown_product", f"No such product on sale: {unknown[0]}.")
            lines = [(i.product_id, i.quantity, prices[i.product_id]) for i in body.items]
            subtotal = sum(quantity * unit for _, quantity, unit in lines)
            vat = (subtotal * VAT_PERCENT + 50) // 100
            if subtotal + vat > MAX_TOTAL_PENCE:
                return problem(422, "order_too_large", "The order's total is too large.")
            order_id, ref, totals = uuid.uuid4(), reference(), (subtotal, vat, subtotal + vat)
            inserted = await connection.fetchval(
                INSERT_ORDER,
                order_id,
                ref,
                *totals,
                c.name.strip(),
                c.email.strip(),
                c.phone.strip(),
                f"{compact[:-3]} {compact[-3:]}",
                key,
                request_hash,
            )
            if inserted is None:
                return problem(409, "request_in_progress", "That request is still running.")
            await connection.executemany(
                INSERT_LINES, [(order_id, n, *line) for n, line in enumerate(lines, start=1)]
            )
    try:
        intent = await app.state.stripe.v1.payment_intents.create_async(
            {"amount": totals[2], "currency": "gbp", "metadata": {"order_id": str(order_id)}},
            {"idempotency_key": f"order-{order_id}"},
        )
    except stripe.StripeError:
        answer = problem(503, "payment_unavailable", "Payment is unavailable; retry later.")
        answer.headers["Retry-After"] = RETRY_AFTER
        return answer
    placed: dict[str, Any] = {
        "id": str(order_id),
        "reference": ref,
        "status": "PENDING_PAYMENT",
        "lines": [
            {"product_id": product, "quantity": quantity, "unit_price_pence": unit}
            for product, quantity, unit in lines
        ],
        "subtotal_pence": totals[0],
        "vat_pence": totals[1],
        "total_pence": totals[2],
        "currency": "GBP",
        "manage_token": "<manage-token>",
        "payment": {"payment_intent_id": intent.id, "client_secret": intent.client_secret},
    }
    text = json.dumps(placed, separators=(",", ":"))
    async with app.state.pool.acquire() as connection, connection.transaction():
        if await connection.fetchval(ATTACH_INTENT, order_id, intent.id, intent.client_secret):
            await connection.execute(STORE_ANSWER, key, request_hash, text)
        elif (stored := await connection.fetchrow(READ_ANSWER, key)) is not None:
            return replay(stored, request_hash)  # a concurrent retry recorded its intent
    return Response(reveal(text, str(order_id)), status_code=201, media_type=JSON)
