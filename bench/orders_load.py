"""The orders bench's load (bench/orders.py): ``count`` requests sent by ``clients``
clients (httpx, a thread each, as in bench/slow_load.py), exactly ``count``, each with an
Idempotency-Key of its own, bounded in time; the answers as a ``Phase``. Two kinds of
request: an order (``POST /v1/orders``, its 201 checked) and a PaymentIntent create
sent straight to the local Stripe (the floor). Also the bench's product, and the order
tables counted and emptied between runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import asyncpg
import httpx

from bench.slow_load import Answer, Phase

REQUEST_TIMEOUT_S = 30.0
STRIPE_KEY = "sk_test_bench"
PRODUCT_ID = "bench-kitchen"
PRICE_PENCE = 1_250_000
VAT_PENCE = (PRICE_PENCE * 20 + 50) // 100
TOTAL_PENCE = PRICE_PENCE + VAT_PENCE
ORDER = json.dumps(
    {
        "items": [{"product_id": PRODUCT_ID, "quantity": 1}],
        "customer": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+44 7700 900123",
            "postcode": "LS1 6HD",
        },
    }
).encode()

# Sends request n with this client and timeout; its answer.
type Send = Callable[[httpx.Client, int, float], Answer]


@dataclass(slots=True)
class Load:
    phase: Phase
    wanted: int
    sent: int = 0
    seconds: float = 0.0  # from the first request sent to the last answer

    def ok(self, status: int) -> int:
        return self.phase.statuses[status]

    @property
    def lost(self) -> int:
        """Requests never sent (the bound) or never answered."""
        return self.wanted - self.sent + self.phase.statuses[0]


def drive(send: Send, *, count: int, clients: int, bound_s: float) -> Load:
    """``count`` requests, ``clients`` at a time, until done or ``bound_s`` is over."""
    load = Load(Phase(), count)
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + bound_s

    def client_loop() -> None:
        with httpx.Client(trust_env=False) as client:  # loopback only, no proxy
            while (left := deadline - time.monotonic()) > 0:
                with lock:
                    if load.sent == count:
                        return
                    n = load.sent
                    load.sent += 1
                answer = send(client, n, min(left, REQUEST_TIMEOUT_S))
                with lock:
                    load.phase.answers.append(answer)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.monotonic() - started
    load.phase.bounded = load.sent < count
    return load


def _answer(started: float, response: httpx.Response | httpx.HTTPError, expected: int) -> Answer:
    """The ``Answer``: no answer (status 0) for an error; a sample for a surprise."""
    now = time.monotonic()
    if isinstance(response, httpx.HTTPError):
        return Answer(0, now - started, now, False, type(response).__name__)
    status = response.status_code
    problem = "" if status == expected else " ".join(response.text.split())[:200]
    return Answer(status, now - started, now, "retry-after" in response.headers, problem)


class _Sender:
    """Requests to ``url``, their keys tagged ``tag``; the PaymentIntents answered."""

    def __init__(self, url: str, tag: str) -> None:
        self._url = url
        self._tag = tag
        self._lock = threading.Lock()
        self.intents: set[str] = set()

    def _keep(self, intent: str) -> None:
        with self._lock:
            self.intents.add(intent)


class Orders(_Sender):
    """``POST /v1/orders``: the bench's order, request n with Idempotency-Key
    ``{tag}-{n}``; a 201 whose body is not the order asked for has its ``error`` set."""

    def __call__(self, client: httpx.Client, n: int, timeout_s: float) -> Answer:
        headers = {"Idempotency-Key": f"{self._tag}-{n}", "Content-Type": "application/json"}
        started = time.monotonic()
        try:
            response = client.post(self._url, content=ORDER, headers=headers, timeout=timeout_s)
        except httpx.HTTPError as error:
            return _answer(started, error, 201)
        answer = _answer(started, response, 201)
        if answer.status != 201:
            return answer
        intent, wrong = order_check(response)
        self._keep(intent)
        return replace(answer, error=wrong)


def order_check(response: httpx.Response) -> tuple[str, str]:
    """(the PaymentIntent id, what is wrong with this 201's body or "")."""
    try:
        body = response.json()
        payment = body["payment"]
        intent, secret = str(payment["payment_intent_id"]), str(payment["client_secret"])
        seen = (body["status"], body["subtotal_pence"], body["vat_pence"], body["total_pence"])
        present = all(body[name] for name in ("id", "reference", "manage_token"))
    except (ValueError, KeyError, TypeError) as error:
        return "", f"201 without {error}: {response.text[:200]}"
    expected = ("PENDING_PAYMENT", PRICE_PENCE, VAT_PENCE, TOTAL_PENCE)
    if seen != expected or not present:
        return intent, f"201 with {seen} (expected {expected}): {response.text[:200]}"
    if not intent.startswith("pi_") or not secret.startswith(f"{intent}_secret_"):
        return intent, f"201 with payment {payment}"
    return intent, ""


class StripeFloor(_Sender):
    """A PaymentIntent create for the order's total, straight to the local Stripe
    (``url``: its base), as the SDK sends it (form-encoded, the secret key, an
    Idempotency-Key)."""

    def __call__(self, client: httpx.Client, n: int, timeout_s: float) -> Answer:
        data = {"amount": str(TOTAL_PENCE), "currency": "gbp", "metadata[order_id]": str(n)}
        headers = {
            "Authorization": f"Bearer {STRIPE_KEY}",
            "Idempotency-Key": f"order-{self._tag}-{n}",
        }
        started = time.monotonic()
        try:
            response = client.post(
                f"{self._url}/v1/payment_intents", data=data, headers=headers, timeout=timeout_s
            )
        except httpx.HTTPError as error:
            return _answer(started, error, 200)
        answer = _answer(started, response, 200)
        if answer.status == 200:
            self._keep(str(response.json().get("id")))
        return answer


def flush_stripe(stripe_url: str) -> None:
    """Empty the local Stripe: localstripe pickles its whole store to disk after every
    create, so a create costs more the more it holds; each run starts from empty."""
    with httpx.Client(trust_env=False) as client:
        client.delete(f"{stripe_url}/_config/data", timeout=REQUEST_TIMEOUT_S).raise_for_status()


# --- the database ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rows:
    orders: int
    with_intent: int  # orders with their PaymentIntent recorded
    lines: int
    answers: int  # 201s stored under an order's Idempotency-Key


_COUNT = """
SELECT (SELECT count(*) FROM orders),
       (SELECT count(*) FROM orders WHERE payment_intent_id IS NOT NULL),
       (SELECT count(*) FROM order_lines),
       (SELECT count(*) FROM idempotency_keys WHERE key LIKE 'orders:%' AND status = 201)
"""
_RESET = """
SET lock_timeout = '10s';
TRUNCATE idempotency_keys, order_lines, orders;
CHECKPOINT;
"""


async def seed(url: str) -> None:
    """The bench's one product, on sale at ``PRICE_PENCE``."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO products (id, name, category, price_pence) VALUES ($1, $2, $3, $4)",
            PRODUCT_ID,
            "Bench Kitchen",
            "KITCHEN",
            PRICE_PENCE,
        )
    finally:
        await connection.close()


async def count_rows(url: str) -> Rows:
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(_COUNT)
        assert row is not None
        return Rows(*(int(value) for value in row))
    finally:
        await connection.close()


async def reset(url: str) -> None:
    """Empty the order tables (a run starts from the same state as the others)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(_RESET)
    finally:
        await connection.close()
