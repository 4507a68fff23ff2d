"""What the appointment operations take and give: a booking to write, its outcomes,
an appointment as stored, the consultants' schedule rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "Appointment",
    "BatchOutcome",
    "Booked",
    "KeyReplay",
    "LimitReached",
    "NewBooking",
    "Render",
    "Replayed",
    "ScheduleRows",
    "SlotTaken",
]


@dataclass(frozen=True, slots=True)
class NewBooking:
    """One booking request, ready to write (ids and token hash made by the caller)."""

    id: str
    reference: str
    kind: str
    category: str
    candidates: tuple[str, ...]  # consultant ids, tried in order
    showroom_id: str | None
    start: datetime
    end: datetime
    customer_name: str
    customer_email: str
    customer_phone: str
    customer_postcode: str
    customer_address: str | None
    notes: str | None
    token_hash: bytes
    idempotency_key: str
    request_hash: bytes
    # The customer account it belongs to (None: a guest's booking).
    account_id: str | None = None

    def as_appointment(self, consultant_id: str, status: str) -> Appointment:
        """The appointment this booking is, with ``consultant_id`` and ``status``."""
        return Appointment(
            id=self.id,
            reference=self.reference,
            kind=self.kind,
            category=self.category,
            status=status,
            consultant_id=consultant_id,
            showroom_id=self.showroom_id,
            start=self.start,
            end=self.end,
            customer_name=self.customer_name,
            customer_email=self.customer_email,
            customer_phone=self.customer_phone,
            customer_postcode=self.customer_postcode,
            customer_address=self.customer_address,
            notes=self.notes,
            token_hash=self.token_hash,
            account_id=self.account_id,
        )


@dataclass(frozen=True, slots=True)
class Booked:
    consultant_id: str


@dataclass(frozen=True, slots=True)
class SlotTaken:
    pass


@dataclass(frozen=True, slots=True)
class KeyReplay:
    """The key was used before: its request's hash and the response it got."""

    request_hash: bytes
    status: int
    response: str


@dataclass(frozen=True, slots=True)
class LimitReached:
    """The customer (by e-mail or phone) already has the most active bookings allowed;
    nothing of this booking, not even its idempotency key, was kept."""


type BatchOutcome = Booked | SlotTaken | KeyReplay | LimitReached
type Replayed = Booked | SlotTaken | str  # str: the status of the existing appointment
type Render = Callable[[NewBooking, Booked | SlotTaken], tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Appointment:
    id: str
    reference: str
    kind: str
    category: str
    status: str
    consultant_id: str
    showroom_id: str | None
    start: datetime
    end: datetime
    customer_name: str
    customer_email: str
    customer_phone: str
    customer_postcode: str
    customer_address: str | None
    notes: str | None
    token_hash: bytes
    status_reason: str | None = None
    previous_start: datetime | None = None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRows:
    showrooms: list[str] = field(default_factory=list)
    consultants: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    hours: list[tuple[str, int, Any, Any]] = field(default_factory=list)
    blocked: list[tuple[str, Any]] = field(default_factory=list)
