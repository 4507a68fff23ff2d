"""Stripe webhooks: verified on the raw bytes before anything is parsed, each event
processed once with its effect, orders never moved backwards; end to end with the
local Stripe's own signed webhooks (a test card paid, a declined one).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx
import trio

from config import Settings
from tests._booking import announced, eventually
from tests.conftest import fetch
from tests.test_orders import ORDER, WEBHOOK_SECRET, order, shop


def signature(payload: bytes, *, at: float | None = None, secret: str = WEBHOOK_SECRET) -> str:
    """A ``Stripe-Signature`` header as Stripe builds it (v1: HMAC-SHA256 of "t.body")."""
    t = int(time.time() if at is None else at)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_type: str, intent_id: str, event_id: str | None = None) -> bytes:
    obj: dict[str, Any] = (
        {"id": f"ch_{secrets.token_hex(6)}", "object": "charge", "payment_intent": intent_id}
        if event_type.startswith("charge.")
        else {"id": intent_id, "object": "payment_intent"}
    )
    return json.dumps(
        {
            "id": event_id or f"evt_{secrets.token_hex(8)}",
            "object": "event",
            "type": event_type,
            "data": {"object": obj},
        }
    ).encode()


async def deliver(
    client: httpx.AsyncClient, payload: bytes, header: str | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    headers["Stripe-Signature"] = signature(payload) if header is None else header
    return await client.post("/v1/webhooks/stripe", content=payload, headers=headers)


async def status_of(client: httpx.AsyncClient, placed: dict[str, Any]) -> str:
    shown = await client.get(
        f"/v1/orders/{placed['id']}", headers={"X-Manage-Token": placed["manage_token"]}
    )
    value: str = shown.json()["status"]
    return value


async def test_bad_signatures_change_nothing(settings: Settings, stripe_url: str) -> None:
    """No header, another secret, a tampered body, a stale timestamp, garbage: 400
    invalid_signature each, and the order stays PENDING_PAYMENT."""
    async with shop(settings, stripe_url) as (client, _, _):
        placed = (await order(client, ORDER)).json()
        paid = event("payment_intent.succeeded", placed["payment"]["payment_intent_id"])
        tampered = paid.replace(b"succeeded", b"payment_failed")
        answers = [
            await client.post(
                "/v1/webhooks/stripe", content=paid, headers={"Content-Type": "application/json"}
            ),
            await deliver(client, paid, signature(paid, secret="whsec_someone_else")),
            await deliver(client, tampered, signature(paid)),
            await deliver(client, paid, signature(paid, at=time.time() - 301)),
            await deliver(client, paid, "t=1,v1=00"),
            # Found by schemathesis: a body that is not UTF-8 (was a 500).
            await deliver(client, b"\xff\xfe\x00{", "!Hgp\tD"),
        ]
        after = await status_of(client, placed)
    assert [a.status_code for a in answers] == [400] * 6
    assert {a.json()["error"]["code"] for a in answers} == {"invalid_signature"}
    assert after == "PENDING_PAYMENT"


async def test_each_event_once_and_never_backwards(settings: Settings, stripe_url: str) -> None:
    """succeeded -> PAID (one order.paid job) even delivered twice and twice at once; a
    failure arriving after it moves nothing; an unknown type is 200 and ignored; a
    refund -> REFUNDED (order.refunded)."""
    async with shop(settings, stripe_url) as (client, _, _):
        placed = (await order(client, ORDER)).json()
        intent = placed["payment"]["payment_intent_id"]
        paid = event("payment_intent.succeeded", intent, "evt_paid")
        first = await deliver(client, paid)
        again = await deliver(client, paid)
        concurrent: list[httpx.Response] = []
        twin = event("payment_intent.succeeded", intent, "evt_twin")

        async def send() -> None:
            concurrent.append(await deliver(client, twin))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(send)
        late_failure = await deliver(client, event("payment_intent.payment_failed", intent))
        still = await status_of(client, placed)
        unknown = await deliver(client, event("customer.created", intent))
        refunded = await deliver(client, event("charge.refunded", intent))
        final = await status_of(client, placed)
        jobs = await announced(settings)
        assert settings.database.url is not None
        events = await fetch(settings.database.url, "SELECT count(*) FROM stripe_events")
    assert [
        a.status_code for a in (first, again, *concurrent, late_failure, unknown, refunded)
    ] == [200] * 7
    assert still == "PAID"
    assert final == "REFUNDED"
    order_jobs = sorted((kind, p["order_id"]) for kind, p in jobs if kind.startswith("order."))
    assert order_jobs == [("order.paid", placed["id"]), ("order.refunded", placed["id"])]
    assert events[0][0] == 5  # evt_paid, evt_twin, the failure, the unknown, the refund: once each


async def test_a_cancelled_intent_cancels_the_unpaid_order_for_good(
    settings: Settings, stripe_url: str
) -> None:
    """payment_intent.canceled: CANCELLED (order.cancelled); a success arriving after
    it does not bring the order back."""
    async with shop(settings, stripe_url) as (client, _, _):
        placed = (await order(client, ORDER)).json()
        intent = placed["payment"]["payment_intent_id"]
        await deliver(client, event("payment_intent.canceled", intent))
        await deliver(client, event("payment_intent.succeeded", intent))
        final = await status_of(client, placed)
        jobs = await announced(settings)
    assert final == "CANCELLED"
    kinds = [kind for kind, p in jobs if p.get("order_id") == placed["id"]]
    assert kinds == ["order.cancelled"]


async def test_the_local_stripe_pays_and_declines_through_signed_webhooks(
    settings: Settings, stripe_url: str
) -> None:
    """Confirmed with pm_card_visa: Stripe's own signed webhook makes it PAID; with a
    card whose charge fails (pm_card_chargeCustomerFail, the one localstripe declines
    at charge time): PAYMENT_FAILED. Orders stay PENDING_PAYMENT until then; each move's
    notification is in the outbox."""
    async with shop(settings, stripe_url) as (client, _, _):
        hook = f"lomash-{secrets.token_hex(4)}"
        async with httpx.AsyncClient(base_url=stripe_url, auth=("sk_test_lomash", "")) as stripe:
            registered = await stripe.post(
                f"/_config/webhooks/{hook}",
                data={
                    "url": str(client.base_url.join("/v1/webhooks/stripe")),
                    "secret": WEBHOOK_SECRET,
                },
            )
            assert registered.status_code == 200, registered.text
            good = (await order(client, ORDER, key="good")).json()
            bad = (await order(client, ORDER, key="bad")).json()
            before = await status_of(client, good)
            for placed, card in ((good, "pm_card_visa"), (bad, "pm_card_chargeCustomerFail")):
                # As the browser would (localstripe takes the card first, then confirm).
                intent = f"/v1/payment_intents/{placed['payment']['payment_intent_id']}"
                await stripe.post(intent, data={"payment_method": card})
                await stripe.post(f"{intent}/confirm")
        await eventually(lambda: _has_status(client, good, "PAID"), within_s=20)
        await eventually(lambda: _has_status(client, bad, "PAYMENT_FAILED"), within_s=20)
        jobs = await announced(settings)
    assert before == "PENDING_PAYMENT"
    order_jobs = sorted((kind, p["order_id"]) for kind, p in jobs if kind.startswith("order."))
    assert order_jobs == sorted([("order.paid", good["id"]), ("order.payment_failed", bad["id"])])


async def _has_status(client: httpx.AsyncClient, placed: dict[str, Any], status: str) -> bool:
    return await status_of(client, placed) == status
