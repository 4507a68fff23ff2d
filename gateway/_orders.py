"""``/v1/orders``: placing an order and paying for it with Stripe, reading it back.

- ``POST /v1/orders`` + ``Idempotency-Key``, ``{"items": [{"product_id", "quantity"}],
  "customer": {"name", "email", "phone", "postcode"}}`` -> 201 ``{"id", "reference",
  "status": "PENDING_PAYMENT", "lines", "subtotal_pence", "vat_pence", "total_pence",
  "currency", "manage_token", "payment": {"payment_intent_id", "client_secret"}}``.
  Stripe unable to answer: 503 ``payment_unavailable``, ``Retry-After: 60``; retry
  with the same key.
- ``GET /v1/orders/{id}`` with ``X-Manage-Token`` (or ``Authorization: Bearer``), or
  the access token of the account that placed it: 401 without either; a wrong token,
  another customer's order and an unknown order are the same 404.
- Placing an order is rate limited per client address and, logged in, per account;
  an order placed while logged in belongs to the account.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, cast

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from actors import GetOrder, OrderReply, PlaceOrder
from actors._booking_rules import scoped_key
from gateway._appointments import (
    CustomerIn,
    caller,
    checked_idempotency_key,
    request_client,
    uk_postcode,
)
from gateway._auth import AccountGuard
from gateway._json import NO_STORE, read_json
from supervisors import ActorRef, InvalidRequest, NotFound

__all__ = ["register_order_routes"]

_ProductId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
_Quantity = Annotated[int, msgspec.Meta(ge=1, le=100)]
MAX_LINES = 20
_ENCODER = msgspec.json.Encoder()


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    product_id: _ProductId
    quantity: _Quantity


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[ItemIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    customer: CustomerIn


def place_message(key: str | None, body: OrderIn, account_id: str | None = None) -> PlaceOrder:
    """The OrderActor's message; 422 for a product asked for on two lines."""
    seen: set[str] = set()
    for n, item in enumerate(body.items):
        if item.product_id in seen:
            raise InvalidRequest(
                f"items[{n}].product_id: already on another line (give one quantity)",
                code="duplicate_product",
                field=f"items[{n}].product_id",
            )
        seen.add(item.product_id)
    c = body.customer
    return PlaceOrder(
        items=tuple((i.product_id, i.quantity) for i in body.items),
        name=c.name.strip(),
        email=c.email.strip(),
        phone=c.phone.strip(),
        postcode=uk_postcode(c.postcode),
        idempotency_key=scoped_key("orders", checked_idempotency_key(key), account_id),
        request_hash=hashlib.sha256(_ENCODER.encode(body)).digest(),
        account_id=account_id,
    )


def _order_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound("no such order") from None


def _reply(reply: OrderReply, headers: dict[str, str] | None = None) -> Response:
    return Response(
        reply.body,
        status=reply.status,
        content_type="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


def register_order_routes(app: QuartTrio, orders: ActorRef[Any, Any], guard: AccountGuard) -> None:
    @app.post("/v1/orders")
    async def place_order() -> Response:
        key = request.headers.get("Idempotency-Key")
        checked_idempotency_key(key)  # a missing or bad key is refused before the body is read
        identity = await guard.identity(request.headers.get("Authorization"))
        account_id = None if identity is None else identity.account_id
        limits = await guard.limit("order", request_client(guard), account_id)
        message = place_message(key, await read_json(OrderIn), account_id)
        return _reply(cast(OrderReply, await orders.ask(message)), limits)

    @app.get("/v1/orders/<raw_id>")
    async def show_order(raw_id: str) -> Response:
        who = await caller(guard, "order")
        message = GetOrder(_order_id(raw_id), who.token, who.account_id)
        return _reply(cast(OrderReply, await orders.ask(message)))
