"""``POST /v1/webhooks/stripe``: Stripe's events, verified before anything is parsed.

The ``Stripe-Signature`` header is checked against the raw body bytes with the
webhook secret (``LOMASH_STRIPE_WEBHOOK_SECRET``) and a tolerance on its timestamp
(``LOMASH_STRIPE_WEBHOOK_TOLERANCE_S``, 300 s): missing, wrong, for another body or too
old -> 400 ``invalid_signature`` and nothing changes. A verified event goes to the
OrderActor, which processes each event id once (actors/_orders.py); the answer is 200
whatever the event did (a duplicate, an unknown type), so Stripe stops resending it.
"""

from __future__ import annotations

import json
from typing import Any, cast

import stripe
from quart import Response, request
from quart_trio import QuartTrio

from actors import OrderReply, PaymentEvent
from config import StripeSettings
from supervisors import ActorRef, InvalidRequest

__all__ = ["register_webhook_routes"]


def _refused(reason: str) -> InvalidRequest:
    return InvalidRequest(
        f"Stripe-Signature: {reason}",
        code="invalid_signature",
        field="Stripe-Signature",
        malformed=True,
    )


def _not_an_event() -> InvalidRequest:
    return InvalidRequest("the event is not a Stripe event", code="invalid_event", malformed=True)


def verified_event(
    payload: bytes, header: str | None, secret: str, tolerance_s: float
) -> PaymentEvent:
    """The event in a body whose signature holds, or the 400 saying why not."""
    if not header:
        raise _refused("missing")
    try:
        # Stripe signs text: a body that is not UTF-8 cannot carry its signature (the
        # SDK would raise UnicodeDecodeError on it).
        payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance_s)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        raise _refused("does not match the body, or is too old") from None
    try:
        event = json.loads(payload)
        event_id, event_type = event["id"], event["type"]
        obj = event["data"]["object"]
    except (ValueError, KeyError, TypeError):
        raise _not_an_event() from None
    if not (isinstance(event_id, str) and isinstance(event_type, str) and isinstance(obj, dict)):
        raise _not_an_event()
    return PaymentEvent(event_id, event_type, _intent_id(event_type, obj))


def _intent_id(event_type: str, obj: dict[str, Any]) -> str | None:
    """The PaymentIntent an event is about (a charge names its intent)."""
    raw = obj.get("id") if event_type.startswith("payment_intent.") else obj.get("payment_intent")
    return raw if isinstance(raw, str) else None


def register_webhook_routes(
    app: QuartTrio, orders: ActorRef[Any, Any], settings: StripeSettings
) -> None:
    secret = settings.webhook_secret
    assert secret is not None

    @app.post("/v1/webhooks/stripe")
    async def stripe_webhook() -> Response:
        payload = cast(bytes, await request.get_data(as_text=False))
        event = verified_event(
            payload, request.headers.get("Stripe-Signature"), secret, settings.webhook_tolerance_s
        )
        reply = cast(OrderReply, await orders.ask(event))
        return Response(reply.body, status=reply.status, content_type="application/json")
