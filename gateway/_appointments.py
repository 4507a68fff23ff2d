"""Appointments over HTTP: availability, booking, and the guest's manage-token routes.

- ``GET /v1/appointments/availability?type=&showroom_id=&from=&to=[&category=]``
- ``POST /v1/appointments`` (``Idempotency-Key`` required): served by gateway/_fast.py
  in front of Quart (the hot route); ``book_message`` here turns it into a ``Book``
- ``GET /v1/appointments/{id}``, ``POST /v1/appointments/{id}/cancel``,
  ``POST /v1/appointments/{id}/reschedule``: with the manage token given at booking
  (``X-Manage-Token`` or ``Authorization: Bearer``), or the access token of the
  account the booking belongs to. Neither: 401; a wrong token, another customer's
  booking and an unknown id get the same 404, so nobody learns which bookings exist.

The shape of a body is checked here (msgspec, errors naming the field); the rules
that need the roster (the consultant works then, the slot is on the grid and in the
future) are the SlotBooker's.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from actors import (
    LONDON,
    AppointmentType,
    Book,
    BookingRequest,
    Cancel,
    Category,
    Customer,
    FindSlots,
    Lookup,
    Reschedule,
    Slot,
    appointment_view,
    local_iso,
)
from adapters import Appointment
from config import BookingSettings
from gateway._auth import AccountGuard, Credentials
from gateway._json import (
    NO_STORE,
    check_json_content_type,
    decode_json,
    json_response,
    read_json,
)
from supervisors import ActorRef, InvalidRequest, NotFound

__all__ = [
    "AVAILABILITY_PARAMETERS",
    "AppointmentIn",
    "Email",
    "Name",
    "Phone",
    "availability_query",
    "availability_view",
    "book_message",
    "caller",
    "register_appointment_routes",
    "request_client",
]

# Free text: no control characters but tab and newline (Postgres refuses NUL).
_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_TEXT)]
Email = Annotated[
    str,
    msgspec.Meta(pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$", max_length=254),
]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9 ()-]{7,20}$")]
_PHONE_DIGITS = 7  # a phone number is also a customer's identity (the booking cap)
_Postcode = Annotated[str, msgspec.Meta(pattern=r"^(?i:[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})$")]
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=_TEXT)]
_Notes = Annotated[str, msgspec.Meta(max_length=2000, pattern=_TEXT)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
# Dates outside these years are refused before any arithmetic can overflow.
_FIRST_YEAR, _LAST_YEAR = 2000, 2999
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class CustomerIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email
    phone: Phone
    postcode: _Postcode
    address: _Text | None = None


class AppointmentIn(msgspec.Struct, forbid_unknown_fields=True):
    type: AppointmentType
    category: Category
    start: datetime
    customer: CustomerIn
    showroom_id: _Id | None = None
    consultant_id: _Id | None = None
    notes: _Notes | None = None


class CancelIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: _Text | None = None


class RescheduleIn(msgspec.Struct, forbid_unknown_fields=True):
    start: datetime
    consultant_id: _Id | None = None


_ENCODER = msgspec.json.Encoder()


def _aware(start: datetime, field: str) -> datetime:
    """``start`` in UTC; 422 without an offset or outside the years anyone books in."""
    if start.tzinfo is None:
        raise InvalidRequest(
            f"{field}: give a UTC offset (e.g. 2027-01-04T10:00:00+00:00)",
            code="invalid_field",
            field=field,
        )
    if not _FIRST_YEAR <= start.year <= _LAST_YEAR:
        raise InvalidRequest(f"{field}: out of range", code="invalid_field", field=field)
    return start.astimezone(UTC)  # safe: far from datetime's limits


def booking_request(body: AppointmentIn) -> BookingRequest:
    """The domain request; 422 for what the body's shape alone already rules out."""
    if body.type is AppointmentType.SHOWROOM and body.showroom_id is None:
        raise InvalidRequest(
            "showroom_id: required for a SHOWROOM appointment",
            code="missing_field",
            field="showroom_id",
        )
    if body.type is AppointmentType.HOME_MEASUREMENT and body.customer.address is None:
        raise InvalidRequest(
            "customer.address: required for a HOME_MEASUREMENT appointment",
            code="missing_field",
            field="customer.address",
        )
    c = body.customer
    if sum(ch.isdigit() for ch in c.phone) < _PHONE_DIGITS:
        raise InvalidRequest(
            f"customer.phone: at least {_PHONE_DIGITS} digits",
            code="invalid_field",
            field="customer.phone",
        )
    return BookingRequest(
        kind=body.type,
        category=body.category,
        start=_aware(body.start, "start"),
        customer=Customer(
            name=c.name.strip(),
            email=c.email.strip(),
            phone=c.phone.strip(),
            postcode=uk_postcode(c.postcode),
            address=c.address,
        ),
        showroom_id=body.showroom_id,
        consultant_id=body.consultant_id,
        notes=body.notes,
    )


def uk_postcode(raw: str) -> str:
    """``ls16hd`` -> ``LS1 6HD`` (the body's pattern has checked it)."""
    compact = raw.replace(" ", "").upper()
    return f"{compact[:-3]} {compact[-3:]}"


def book_message(
    idempotency_key: str | None, content_type: str, body: bytes, account_id: str | None = None
) -> Book:
    """The SlotBooker's message for a ``POST /v1/appointments``, or the 4xx error."""
    key = checked_idempotency_key(idempotency_key)
    check_json_content_type(content_type)
    decoded = decode_json(body, AppointmentIn)
    digest = hashlib.sha256(_ENCODER.encode(decoded)).digest()
    return Book(booking_request(decoded), key, digest, account_id)


def checked_idempotency_key(key: str | None) -> str:
    """The request's Idempotency-Key, or the 400 that says what it must be."""
    if key is None:
        raise InvalidRequest(
            "Idempotency-Key: this request needs the header (a unique value per request; "
            "send the same one again to retry safely)",
            code="idempotency_key_required",
            field="Idempotency-Key",
            malformed=True,
        )
    if not _IDEMPOTENCY_KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key: 1 to 255 visible ASCII characters",
            code="invalid_idempotency_key",
            field="Idempotency-Key",
            malformed=True,
        )
    return key


def request_client(guard: AccountGuard) -> str:
    """This request's client address (X-Forwarded-For believed from trusted proxies)."""
    return guard.client(request.remote_addr, request.headers.get("X-Forwarded-For"))


async def caller(guard: AccountGuard, what: str = "booking") -> Credentials:
    """The caller's manage token and/or account (gateway/_auth.py); 401 without."""
    return await guard.credentials(
        request.headers.get("X-Manage-Token"), request.headers.get("Authorization"), what
    )


def _appointment_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound("no such appointment") from None


_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # the same rule as the body's ``_Id``


def _showroom_id(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if not _ID.match(raw):
        raise InvalidRequest(
            "showroom_id: no such showroom", code="unknown_showroom", field="showroom_id"
        )
    return raw


def _day(args: Mapping[str, str], name: str, default: date) -> date:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(
            f"{name}: expected a date like 2027-03-28", code="invalid_field", field=name
        ) from None
    if not _FIRST_YEAR <= day.year <= _LAST_YEAR:
        raise InvalidRequest(f"{name}: out of range", code="invalid_field", field=name)
    return day


def _enum[E: (AppointmentType, Category)](
    args: Mapping[str, str], kind: type[E], name: str, *, required: bool
) -> E | None:
    raw = args.get(name)
    if raw is None or raw == "":
        if required:
            raise InvalidRequest(f"{name}: required", code="missing_field", field=name)
        return None
    try:
        return kind(raw.upper())
    except ValueError:
        allowed = ", ".join(kind)
        raise InvalidRequest(
            f"{name}: one of {allowed}", code="invalid_field", field=name
        ) from None


AVAILABILITY_PARAMETERS = frozenset({"type", "showroom_id", "category", "from", "to"})


def availability_query(
    args: Mapping[str, str], settings: BookingSettings
) -> tuple[date, date, FindSlots | None]:
    """The days asked for, clamped to today..the horizon (London days), and the
    catalogue's message for them (None: no day is left to show)."""
    kind = _enum(args, AppointmentType, "type", required=True)
    assert kind is not None
    category = _enum(args, Category, "category", required=False)
    showroom_id = _showroom_id(args.get("showroom_id"))
    if kind is AppointmentType.SHOWROOM and showroom_id is None:
        raise InvalidRequest(
            "showroom_id: required for SHOWROOM availability",
            code="missing_field",
            field="showroom_id",
        )
    today = datetime.now(UTC).astimezone(LONDON).date()
    first = _day(args, "from", today)
    last = _day(args, "to", first + timedelta(days=6))
    if last < first:
        raise InvalidRequest("to: must be on or after from", code="invalid_field", field="to")
    if (last - first).days + 1 > settings.max_range_days:
        raise InvalidRequest(
            f"to: at most {settings.max_range_days} days after from",
            code="range_too_long",
            field="to",
        )
    first = max(first, today)
    last = min(last, today + timedelta(days=settings.horizon_days))
    if last < first:
        return first, last, None
    return first, last, FindSlots(kind, showroom_id, category, first, last)


def availability_view(first: date, last: date, slots: list[Slot]) -> dict[str, Any]:
    return {
        "timezone": str(LONDON),
        "from": first.isoformat(),
        "to": last.isoformat(),
        "slots": [_slot_view(s) for s in slots],
    }


class SlotView(msgspec.Struct, frozen=True):
    """A free slot as answered (encoded as an object with these keys, in order)."""

    start: str
    end: str
    consultant_id: str
    showroom_id: str | None


@functools.lru_cache(maxsize=16384)
def _slot_view(slot: Slot) -> SlotView:
    """Remembered: a warm week is the same hundred slots answered again and again."""
    return SlotView(
        local_iso(slot.start), local_iso(slot.end), slot.consultant_id, slot.showroom_id
    )


def register_appointment_routes(
    app: QuartTrio,
    booker: ActorRef[Any, Any],
    reader: ActorRef[Any, Any],
    catalogue: ActorRef[Any, Any],
    settings: BookingSettings,
    guard: AccountGuard,
) -> None:
    async def verified(raw_id: str) -> tuple[str, Credentials]:
        """The id and credentials of a booking the caller may change (the reader
        checks, so no anonymous request reaches the writer or its breaker)."""
        appointment_id = _appointment_id(raw_id)
        who = await caller(guard)
        await reader.ask(Lookup(appointment_id, who.token, who.account_id))
        return appointment_id, who

    @app.get("/v1/appointments/availability")
    async def availability() -> Response:
        first, last, message = availability_query(request.args, settings)
        slots: list[Slot] = await catalogue.ask(message) if message is not None else []
        return json_response(availability_view(first, last, slots))

    @app.get("/v1/appointments/<raw_id>")
    async def show(raw_id: str) -> Response:
        appointment_id = _appointment_id(raw_id)
        who = await caller(guard)
        found: Appointment = await reader.ask(Lookup(appointment_id, who.token, who.account_id))
        return json_response(appointment_view(found), headers=NO_STORE)

    @app.post("/v1/appointments/<raw_id>/cancel")
    async def cancel(raw_id: str) -> Response:
        appointment_id, who = await verified(raw_id)
        reason = "cancelled_by_customer"
        if await request.get_data(as_text=False):
            given = (await read_json(CancelIn)).reason
            reason = given or reason
        after: Appointment = await booker.ask(
            Cancel(appointment_id, who.token, reason, account_id=who.account_id)
        )
        return json_response(appointment_view(after), headers=NO_STORE)

    @app.post("/v1/appointments/<raw_id>/reschedule")
    async def reschedule(raw_id: str) -> Response:
        appointment_id, who = await verified(raw_id)
        body = await read_json(RescheduleIn)
        start = _aware(body.start, "start")
        moved: Appointment = await booker.ask(
            Reschedule(
                appointment_id, who.token, start, body.consultant_id, account_id=who.account_id
            )
        )
        return json_response(appointment_view(moved), headers=NO_STORE)
