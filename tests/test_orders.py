"""Orders paid with Stripe (a local Stripe on loopback, behind the fault proxy):
POST /v1/orders with an Idempotency-Key, GET /v1/orders/{id} with the manage token;
Stripe down -> 503 payment_unavailable and the same key succeeds later, one order and
one PaymentIntent; bad input named field by field.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
import trio_asyncio

from chaos import Proxy, open_proxy
from config import Settings, StripeSettings
from tests._accounts import bearer, customer
from tests._booking import eventually, prepare_database, running_tree
from tests._stripe_idempotency import StripeIdempotency, stripe_idempotency
from tests.conftest import fetch, port_of

WEBHOOK_SECRET = "whsec_lomash_test"
CUSTOMER = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+44 7700 900123",
    "postcode": "ls1 6hd",
}
# 1 x £12,500.00 + 2 x £4,200.00 = £20,900.00; VAT £4,180.00; total £25,080.00.
ORDER: dict[str, Any] = {
    "items": [
        {"product_id": "hartley-shaker-kitchen", "quantity": 1},
        {"product_id": "aria-fitted-wardrobe", "quantity": 2},
    ],
    "customer": CUSTOMER,
}


@asynccontextmanager
async def shop(
    settings: Settings, stripe_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Proxy, StripeIdempotency]]:
    """The tree with Stripe configured on a fresh database: the PaymentActor talks to a
    fault proxy, in front of Stripe's idempotency (tests/_stripe_idempotency.py), in
    front of the local Stripe."""
    assert settings.database.url is not None
    async with (
        trio_asyncio.open_loop(),
        stripe_idempotency(stripe_url) as (idempotent_url, layer),
        open_proxy(port_of(idempotent_url)) as proxy,
    ):
        await prepare_database(settings.database.url)
        stripe = StripeSettings(
            secret_key="sk_test_lomash",
            webhook_secret=WEBHOOK_SECRET,
            api_base=f"http://127.0.0.1:{proxy.port}",
            timeout_s=1.0,
            network_retries=0,
            reconcile_retry_s=0.2,
        )
        async with running_tree(dataclasses.replace(settings, stripe=stripe)) as client:
            yield client, proxy, layer


async def order(
    client: httpx.AsyncClient, body: Any, key: str | None = "order-1"
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await client.post("/v1/orders", json=body, headers=headers)


async def test_an_order_is_priced_in_pence_with_vat_and_gets_one_payment_intent(
    settings: Settings, stripe_url: str
) -> None:
    """201 PENDING_PAYMENT with today's prices, 20 % VAT, the PaymentIntent's client
    secret; readable with its manage token; the same key replays the same answer."""
    async with shop(settings, stripe_url) as (client, _, _):
        placed = await order(client, ORDER)
        again = await order(client, ORDER)
        body = placed.json()
        token = {"X-Manage-Token": body["manage_token"]}
        shown = await client.get(f"/v1/orders/{body['id']}", headers=token)
        wrong = await client.get(f"/v1/orders/{body['id']}", headers={"X-Manage-Token": "x" * 32})
        unknown = await client.get("/v1/orders/00000000-0000-4000-8000-000000000000", headers=token)
        anonymous = await client.get(f"/v1/orders/{body['id']}")
        assert settings.database.url is not None
        rows = await fetch(
            settings.database.url, "SELECT status, payment_intent_id, total_pence FROM orders"
        )
    assert placed.status_code == 201, placed.text
    assert body["status"] == "PENDING_PAYMENT"
    assert body["reference"].startswith("LW-")
    assert [
        (line["product_id"], line["quantity"], line["unit_price_pence"]) for line in body["lines"]
    ] == [
        ("hartley-shaker-kitchen", 1, 1_250_000),
        ("aria-fitted-wardrobe", 2, 420_000),
    ]
    assert (body["subtotal_pence"], body["vat_pence"], body["total_pence"]) == (
        2_090_000,
        418_000,
        2_508_000,
    )
    assert body["currency"] == "GBP"
    intent = body["payment"]["payment_intent_id"]
    assert intent.startswith("pi_")
    assert body["payment"]["client_secret"].startswith(f"{intent}_secret_")
    assert placed.headers["Cache-Control"] == "no-store"
    assert again.status_code == 201
    assert again.content == placed.content
    assert shown.status_code == 200
    assert shown.json()["lines"] == body["lines"]
    assert shown.json()["status"] == "PENDING_PAYMENT"
    assert (wrong.status_code, unknown.status_code) == (404, 404)
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert anonymous.status_code == 401
    assert [tuple(r) for r in rows] == [("PENDING_PAYMENT", intent, 2_508_000)]


async def test_stripe_down_is_503_payment_unavailable_and_the_same_key_succeeds_after(
    settings: Settings, stripe_url: str
) -> None:
    """Stripe cut: 503 payment_unavailable, Retry-After 60, the plain message, the order
    waiting without an intent; Stripe back: the same key gives 201 for the same order,
    with one PaymentIntent recorded."""
    async with shop(settings, stripe_url) as (client, proxy, _):
        proxy.reset()
        refused = await order(client, ORDER, key="while-down")
        proxy.forward()
        placed = await order(client, ORDER, key="while-down")
        assert settings.database.url is not None
        rows = await fetch(
            settings.database.url, "SELECT id::text, status, payment_intent_id FROM orders"
        )
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "60"
    error = refused.json()["error"]
    assert error["code"] == "payment_unavailable"
    assert error["message"] == "Payment temporarily unavailable, please try again"
    assert placed.status_code == 201, placed.text
    assert [tuple(r) for r in rows] == [
        (placed.json()["id"], "PENDING_PAYMENT", placed.json()["payment"]["payment_intent_id"])
    ]


async def test_the_same_key_with_another_body_is_refused(
    settings: Settings, stripe_url: str
) -> None:
    """422 idempotency_key_reused; nothing new is written."""
    async with shop(settings, stripe_url) as (client, _, _):
        first = await order(client, ORDER, key="k")
        other = await order(client, {**ORDER, "items": ORDER["items"][:1]}, key="k")
        assert settings.database.url is not None
        rows = await fetch(settings.database.url, "SELECT count(*) FROM orders")
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert [tuple(r) for r in rows] == [(1,)]


def items(*lines: Any) -> dict[str, Any]:
    return {"items": list(lines), "customer": CUSTOMER}


LINE = {"product_id": "aria-fitted-wardrobe", "quantity": 1}


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (items({**LINE, "product_id": "no-such-range"}), "items[0].product_id", "unknown_product"),
        (items({**LINE, "quantity": 0}), "items[0].quantity", "invalid_field"),
        (items({**LINE, "quantity": -3}), "items[0].quantity", "invalid_field"),
        (items({**LINE, "quantity": 101}), "items[0].quantity", "invalid_field"),
        (items({**LINE, "quantity": 1.5}), "items[0].quantity", None),
        (items({**LINE, "quantity": "2"}), "items[0].quantity", None),
        (items({**LINE, "quantity": True}), "items[0].quantity", None),
        (items(), "items", None),
        (items(*[{**LINE, "product_id": f"p{n}"} for n in range(21)]), "items", None),
        (items(LINE, LINE), "items[1].product_id", "duplicate_product"),
        (
            items({"product_id": "oakridge-country-kitchen", "quantity": 100}),
            "items",
            "order_too_large",
        ),
        ({"items": [LINE]}, "customer", None),
    ],
)
async def test_bad_orders_are_422_naming_the_field(
    settings: Settings, stripe_url: str, body: Any, field: str, code: str | None
) -> None:
    """Every refusal is a 422 that names the field (and nothing is written)."""
    async with shop(settings, stripe_url) as (client, _, _):
        answer = await order(client, body)
        assert settings.database.url is not None
        rows = await fetch(settings.database.url, "SELECT count(*) FROM orders")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    if code is not None:
        assert answer.json()["error"]["code"] == code
    assert [tuple(r) for r in rows] == [(0,)]


async def test_an_order_without_an_idempotency_key_is_400(
    settings: Settings, stripe_url: str
) -> None:
    """The key is required (a retry must be safe)."""
    async with shop(settings, stripe_url) as (client, _, _):
        answer = await order(client, ORDER, key=None)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "idempotency_key_required"


async def test_a_timeout_whose_request_reached_stripe_still_gives_one_payment_intent(
    settings: Settings, stripe_url: str
) -> None:
    """Stripe slower than the call's deadline: the answer is lost (503) but the request
    arrives and Stripe makes an intent; the retry with the same key asks again with the
    same Stripe Idempotency-Key and gets that intent: one PaymentIntent for the order."""
    url = settings.database.url
    assert url is not None
    async with shop(settings, stripe_url) as (client, proxy, layer):
        proxy.slow(1.5)  # each way: past the 1 s deadline, and the request still goes on
        refused = await order(client, ORDER, key="slow")
        [(order_id,)] = [tuple(r) for r in await fetch(url, "SELECT id::text FROM orders")]
        key = f"order-{order_id}"

        async def reached_stripe() -> bool:
            return layer.forwarded[key] == 1

        await eventually(reached_stripe)
        proxy.forward()
        placed = await order(client, ORDER, key="slow")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "payment_unavailable"
    assert placed.status_code == 201, placed.text
    assert placed.json()["id"] == order_id
    assert (layer.forwarded[key], layer.replayed[key]) == (1, 1)  # created once, replayed


async def test_orders_belong_to_their_account_and_no_one_else(
    settings: Settings, stripe_url: str
) -> None:
    """Logged in, an order is the account's: its owner reads it and lists it with the
    access token alone; another customer gets the same 404 as for an unknown order
    and lists nothing; a guest with the same Idempotency-Key places an order of its
    own (never this one's answer)."""
    async with shop(settings, stripe_url) as (client, _, _):
        ada = await customer(client, "ada@example.com")
        bob = await customer(client, "bob@example.com")
        placed = await client.post(
            "/v1/orders", json=ORDER, headers={"Idempotency-Key": "same", **bearer(ada)}
        )
        guest = await order(client, ORDER, key="same")
        order_id = placed.json()["id"]
        owner = await client.get(f"/v1/orders/{order_id}", headers=bearer(ada))
        stranger = await client.get(f"/v1/orders/{order_id}", headers=bearer(bob))
        unknown = await client.get(f"/v1/orders/{uuid.uuid4()}", headers=bearer(bob))
        listed = {
            "ada": await client.get("/v1/me/orders", headers=bearer(ada)),
            "bob": await client.get("/v1/me/orders", headers=bearer(bob)),
        }
    assert placed.status_code == 201, placed.text
    assert guest.status_code == 201
    assert guest.json()["id"] != order_id
    assert owner.status_code == 200
    assert owner.json()["id"] == order_id
    assert (stranger.status_code, unknown.status_code) == (404, 404)
    assert stranger.json()["error"] == {**unknown.json()["error"], "request_id": ANY}
    assert [o["id"] for o in listed["ada"].json()["orders"]] == [order_id]
    assert listed["ada"].json()["orders"][0]["total_pence"] == placed.json()["total_pence"]
    assert listed["bob"].json() == {"orders": []}
