"""The OrderActor: the one writer of orders.

``PlaceOrder`` (POST /v1/orders): the order is placed at today's prices (one
transaction: lines, subtotal, VAT at 20 %, total; integer pence), then its
PaymentIntent is asked of the PaymentActor, then recorded with the answer under the
request's Idempotency-Key (a second transaction). Stripe unable to answer: 503
``payment_unavailable`` and the order waits, PENDING_PAYMENT without an intent; the
same key later finds the same order and asks Stripe again with the same Stripe
Idempotency-Key (``order-{id}``), and the first intent recorded is the order's, so an
order has exactly one. The same key with another body is 422; an answered key gets
its first answer again.

``GetOrder`` (GET /v1/orders/{id}): with the order's manage token (derived, never
stored: actors/_tokens.py); a wrong token and an unknown order are the same 404.

``PaymentEvent`` (a verified Stripe webhook, or the reconciliation): processed once
per event id, atomically with its effect. ``payment_intent.succeeded`` -> PAID (from
PENDING_PAYMENT, or PAYMENT_FAILED: a second card may succeed), ``payment_failed`` ->
PAYMENT_FAILED (from PENDING_PAYMENT only), ``canceled`` -> CANCELLED (an unpaid order
whose intent was cancelled), ``charge.refunded`` -> REFUNDED (from PAID);
anything else moves nothing: an order never goes backwards, and unknown event types
are recorded and ignored. Every move writes its notification job to the outbox
(``order.paid``, ``order.payment_failed``, ``order.cancelled``, ``order.refunded``).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from actors._booking_effects import NOTIFICATIONS
from actors._booking_rules import key_reused, new_reference, to_json
from actors._payments import CreateIntent, PaymentMessage, pay
from actors._tokens import TOKEN_MARKER, manage_token, reveal
from adapters import NewOrder, Order, OrderLine, OrderStore, OutboxJob, PaymentIntent, Priced
from config import StripeSettings
from supervisors import ActorRef, InvalidRequest, NotFound

__all__ = [
    "TRANSITIONS",
    "GetOrder",
    "OrderActor",
    "OrderMessage",
    "OrderReply",
    "PaymentEvent",
    "PlaceOrder",
    "order_notice",
    "price",
]

log = structlog.get_logger("actors.orders")

VAT_PERCENT = 20
# Stripe's largest amount in a charge, in pence (£999,999.99).
MAX_TOTAL_PENCE = 99_999_999


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    items: tuple[tuple[str, int], ...]  # (product id, quantity), as asked
    name: str
    email: str
    phone: str
    postcode: str
    idempotency_key: str  # the client's, scoped to the route by the gateway
    request_hash: bytes
    account_id: str | None = None  # the logged-in customer's (None: a guest)


@dataclass(frozen=True, slots=True)
class GetOrder:
    """With the order's manage token, or as the account the order belongs to."""

    order_id: str
    token: str | None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountOrders:
    """An account's orders (``GET /v1/me/orders``), newest first: a 200 reply."""

    account_id: str
    limit: int = 100


@dataclass(frozen=True, slots=True)
class OrderReply:
    status: int
    body: str


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    event_id: str
    event_type: str
    intent_id: str | None


type OrderMessage = PlaceOrder | GetOrder | AccountOrders | PaymentEvent

# event type -> (status it moves an order to, the statuses it may move it from, notice)
TRANSITIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "payment_intent.succeeded": ("PAID", ("PENDING_PAYMENT", "PAYMENT_FAILED"), "order.paid"),
    "payment_intent.payment_failed": (
        "PAYMENT_FAILED",
        ("PENDING_PAYMENT",),
        "order.payment_failed",
    ),
    "payment_intent.canceled": (
        "CANCELLED",
        ("PENDING_PAYMENT", "PAYMENT_FAILED"),
        "order.cancelled",
    ),
    "charge.refunded": ("REFUNDED", ("PAID",), "order.refunded"),
}


def order_notice(kind: str, order_id: str) -> OutboxJob:
    """The notifier's job for an order's move (once per order and kind)."""
    return OutboxJob(f"{kind}:{order_id}", NOTIFICATIONS, kind, {"order_id": order_id})


def price(lines: Sequence[OrderLine]) -> Priced:
    """Subtotal, VAT (20 %, rounded half up to the penny) and total, in pence."""
    subtotal = sum(line.quantity * line.unit_price_pence for line in lines)
    vat = (subtotal * VAT_PERCENT + 50) // 100
    if subtotal + vat > MAX_TOTAL_PENCE:
        raise InvalidRequest(
            f"items: the order's total is over the most one payment can take "
            f"({MAX_TOTAL_PENCE} pence)",
            code="order_too_large",
            field="items",
        )
    return Priced(tuple(lines), subtotal, vat, subtotal + vat)


def _view(order: Order, token: str) -> dict[str, Any]:
    return {
        "id": order.id,
        "reference": order.reference,
        "status": order.status,
        "lines": [
            {
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_price_pence": line.unit_price_pence,
            }
            for line in order.lines
        ],
        "subtotal_pence": order.subtotal_pence,
        "vat_pence": order.vat_pence,
        "total_pence": order.total_pence,
        "currency": order.currency,
        "manage_token": token,
    }


class OrderActor:
    def __init__(
        self,
        store: OrderStore,
        payments: ActorRef[PaymentMessage, PaymentIntent],
        stripe: StripeSettings,
        *,
        token_key: bytes,
    ) -> None:
        self._store = store
        self._payments = payments
        self._stripe = stripe
        self._token_key = token_key

    async def handle(self, message: OrderMessage) -> OrderReply:
        match message:
            case PlaceOrder():
                return await self._place(message)
            case GetOrder():
                return await self._get(message)
            case AccountOrders():
                orders = await self._store.of_account(message.account_id, message.limit)
                views = [_view(o, manage_token(self._token_key, o.id)) for o in orders]
                return OrderReply(200, to_json({"orders": views}))
            case PaymentEvent():
                return await self._event(message)

    async def _place(self, message: PlaceOrder) -> OrderReply:
        new = NewOrder(
            id=str(uuid.uuid4()),
            reference=new_reference(),
            items=message.items,
            name=message.name,
            email=message.email,
            phone=message.phone,
            postcode=message.postcode,
            idempotency_key=message.idempotency_key,
            request_hash=message.request_hash,
            account_id=message.account_id,
        )
        placed = await self._store.place(new, price)
        if placed.request_hash != message.request_hash:
            raise key_reused()
        if placed.answer is not None:
            return self._revealed(OrderReply(*placed.answer))
        order = placed.order
        if order.payment_intent_id is None:
            intent = await pay(
                self._payments,
                CreateIntent(
                    order_id=order.id,
                    amount_pence=order.total_pence,
                    currency=order.currency,
                    idempotency_key=f"order-{order.id}",
                ),
                retry_after_s=self._stripe.unavailable_retry_after_s,
            )
            stored = self._answer(order, intent.id, intent.client_secret)
            order = await self._store.attach_intent(
                order, intent.id, intent.client_secret, (stored.status, stored.body)
            )
        assert order.payment_intent_id is not None
        assert order.client_secret is not None
        return self._revealed(self._answer(order, order.payment_intent_id, order.client_secret))

    def _answer(self, order: Order, intent_id: str, client_secret: str) -> OrderReply:
        """The 201 as stored: the manage token's place held by a marker."""
        body = _view(order, TOKEN_MARKER)
        body["payment"] = {"payment_intent_id": intent_id, "client_secret": client_secret}
        return OrderReply(201, to_json(body))

    def _revealed(self, reply: OrderReply) -> OrderReply:
        return OrderReply(reply.status, reveal(reply.body, self._token_key))

    async def _get(self, message: GetOrder) -> OrderReply:
        expected = manage_token(self._token_key, message.order_id)
        order = None
        if message.token is not None and hmac.compare_digest(expected, message.token):
            order = await self._store.fetch(message.order_id)
        elif message.account_id is not None:
            order = await self._store.fetch(message.order_id)
            if order is not None and order.account_id != message.account_id:
                order = None  # another customer's: the same 404 as an unknown id
        if order is None:
            raise NotFound("no such order")
        return OrderReply(200, to_json(_view(order, expected)))

    async def _event(self, message: PaymentEvent) -> OrderReply:
        move, kind = None, ""
        if (transition := TRANSITIONS.get(message.event_type)) is not None:
            to, sources, kind = transition
            move = (to, sources)
        outcome = await self._store.apply_payment_event(
            message.event_id,
            message.event_type,
            message.intent_id,
            move,
            lambda order_id: order_notice(kind, order_id),  # only called for a move
        )
        log.info(
            "payment_event",
            event_id=message.event_id,
            event_type=message.event_type,
            duplicate=outcome.duplicate,
            order_id=outcome.order_id,
            status=outcome.status,
            moved=outcome.moved,
        )
        return OrderReply(200, to_json({"received": True}))
