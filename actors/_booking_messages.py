"""The SlotBooker's messages (book, cancel, reschedule, look up) and its queue names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from actors._calendar import (
    AppointmentType,
    Category,
)

__all__ = [
    "BOOKINGS_QUEUE",
    "REPLAY_KIND",
    "AccountAppointments",
    "Book",
    "BookReply",
    "BookerMessage",
    "BookingRequest",
    "Cancel",
    "Customer",
    "Lookup",
    "Reschedule",
]


BOOKINGS_QUEUE = "bookings"


REPLAY_KIND = "booking.replay"


@dataclass(frozen=True, slots=True)
class Customer:
    name: str
    email: str
    phone: str
    postcode: str
    address: str | None = None


@dataclass(frozen=True, slots=True)
class BookingRequest:
    """A well-formed booking request (shape checked by the gateway)."""

    kind: AppointmentType
    category: Category
    start: datetime  # aware
    customer: Customer
    showroom_id: str | None = None
    consultant_id: str | None = None
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class Book:
    request: BookingRequest
    idempotency_key: str  # the client's key
    request_hash: bytes  # of the canonical request body
    # The logged-in customer's account (None: a guest). An account's keys are its own:
    # another caller's same key is another request.
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class BookReply:
    """The HTTP answer, stored with the key so a retry gets exactly this again."""

    status: int
    body: str


# The caller of a booking's own routes proves it with the booking's manage token or
# as the account the booking belongs to (``account_id``); either one is enough.


@dataclass(frozen=True, slots=True)
class Lookup:
    appointment_id: str
    token: str | None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    appointment_id: str
    token: str | None
    reason: str = "cancelled_by_customer"
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reschedule:
    appointment_id: str
    token: str | None
    start: datetime
    consultant_id: str | None = None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountAppointments:
    """The appointments of an account (``GET /v1/me/appointments``), newest first."""

    account_id: str
    limit: int = 100


type BookerMessage = Book | Cancel | Reschedule
