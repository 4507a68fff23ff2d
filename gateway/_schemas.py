"""The answers' shapes, as msgspec types, for the OpenAPI document (gateway/_openapi.py).

The request bodies' types are the ones that decode them (``AppointmentIn``,
``OrderIn``, ...); these describe what the views write. They cannot drift unseen:
schemathesis checks every answer of the running service against the document in
``make test`` (tests/test_openapi.py).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "AccountOut",
    "AppointmentOut",
    "AppointmentsOut",
    "AvailabilityOut",
    "BookingOut",
    "ErrorOut",
    "HealthOut",
    "MeOut",
    "OrderOut",
    "OrdersOut",
    "PlacedOrderOut",
    "ProductOut",
    "ProductsOut",
    "ReceivedOut",
    "ShowroomsOut",
    "StatusOut",
    "StripeEvent",
    "TokensOut",
]


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    request_id: str
    field: str | msgspec.UnsetType = msgspec.UNSET


class ErrorOut(msgspec.Struct):
    """Every error, whatever its status."""

    error: ErrorBody


class Checks(msgspec.Struct):
    database: str
    redis: str


class HealthOut(msgspec.Struct):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    service: str
    version: str
    checks: Checks


class ReadyChecks(msgspec.Struct):
    database: str


class StatusOut(msgspec.Struct):
    status: str
    checks: ReadyChecks | msgspec.UnsetType = msgspec.UNSET


class Showroom(msgspec.Struct):
    id: str
    name: str
    address: str
    city: str
    postcode: str
    timezone: str


class ShowroomsOut(msgspec.Struct):
    showrooms: list[Showroom]


class ProductOut(msgspec.Struct):
    id: str
    name: str
    category: Literal["KITCHEN", "BEDROOM"]
    price_pence: int
    currency: str
    description: str | msgspec.UnsetType = msgspec.UNSET


class ProductsOut(msgspec.Struct):
    products: list[ProductOut]


class SlotOut(msgspec.Struct):
    start: str
    end: str
    consultant_id: str
    showroom_id: str | None


class AvailabilityOut(msgspec.Struct, rename={"first": "from", "last": "to"}):
    timezone: str
    first: str
    last: str
    slots: list[SlotOut]


class CustomerOut(msgspec.Struct):
    name: str
    email: str
    phone: str
    postcode: str
    address: str | None


class _Appointment(msgspec.Struct, kw_only=True):
    """What a booking's every view shows."""

    id: str
    reference: str
    type: str
    category: str
    start: str
    end: str
    consultant_id: str
    showroom_id: str | None
    customer: CustomerOut
    notes: str | None


class AppointmentOut(_Appointment, kw_only=True):
    status: str
    status_reason: str | msgspec.UnsetType = msgspec.UNSET
    previous_start: str | msgspec.UnsetType = msgspec.UNSET


class BookingOut(_Appointment, kw_only=True):
    """201 CONFIRMED, or 202 PENDING (Postgres down: confirmed by email shortly)."""

    status: Literal["CONFIRMED", "PENDING"]
    manage_token: str
    message: str | msgspec.UnsetType = msgspec.UNSET


class AppointmentsOut(msgspec.Struct):
    appointments: list[AppointmentOut]


class LineOut(msgspec.Struct):
    product_id: str
    quantity: int
    unit_price_pence: int


class OrderOut(msgspec.Struct):
    id: str
    reference: str
    status: str
    lines: list[LineOut]
    subtotal_pence: int
    vat_pence: int
    total_pence: int
    currency: str
    manage_token: str


class Payment(msgspec.Struct):
    payment_intent_id: str
    client_secret: str


class PlacedOrderOut(OrderOut):
    payment: Payment


class OrdersOut(msgspec.Struct):
    orders: list[OrderOut]


class TokensOut(msgspec.Struct):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    # None: issued while Redis was down (no session to refresh: log in again).
    refresh_token: str | None


class AccountOut(msgspec.Struct):
    id: str
    email: str
    name: str
    phone: str | None
    created_at: str


class StripeEvent(msgspec.Struct):
    """A Stripe event as Stripe sends it (only what the service reads is described)."""

    id: str
    type: str
    data: dict[str, Any]


class ReceivedOut(msgspec.Struct):
    received: bool


class MeOut(msgspec.Struct):
    id: str
    email: str
    name: str
    phone: str | None
