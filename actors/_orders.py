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
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actors._booking_rules import key_reused, new_reference, to_json
from actors._payments import CreateIntent, PaymentMessage, pay
from actors._tokens import TOKEN_MARKER, manage_token, reveal
from adapters import NewOrder, Order, OrderLine, OrderStore, PaymentIntent, Priced
from config import StripeSettings
from supervisors import ActorRef, InvalidRequest, NotFound

__all__ = ["GetOrder", "OrderActor", "OrderMessage", "OrderReply", "PlaceOrder", "price"]

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


@dataclass(frozen=True, slots=True)
class GetOrder:
    order_id: str
    token: str


@dataclass(frozen=True, slots=True)
class OrderReply:
    status: int
    body: str


type OrderMessage = PlaceOrder | GetOrder


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
                order.id, intent.id, intent.client_secret, (stored.status, stored.body)
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
        if hmac.compare_digest(expected, message.token):
            order = await self._store.fetch(message.order_id)
        if order is None:
            raise NotFound("no such order")
        return OrderReply(200, to_json(_view(order, message.token)))
