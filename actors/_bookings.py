"""The SlotBooker's messages and records, and the booking rules that need no I/O.

Shared by the SlotBooker (actors/_booker.py), the BookingReplayer and the gateway:
the messages, the JSON views, Redis key names, the pending-booking record, and the
checks a requested slot must pass against the roster.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import msgspec

from actors._calendar import (
    LONDON,
    SLOT,
    AppointmentType,
    Category,
    Consultant,
    Roster,
    local_iso,
)
from adapters import Appointment, Cache, CacheChanges, CacheOperation, NewBooking
from config import DEVELOPMENT_TOKEN_SECRET, BookingSettings
from supervisors import Conflict, ConnectionLost, InvalidRequest, LomashError

__all__ = [
    "BOOKINGS_QUEUE",
    "REPLAY_KIND",
    "SLOT_TAKEN",
    "TOKEN_MARKER",
    "Book",
    "BookReply",
    "BookerMessage",
    "BookingRequest",
    "Cancel",
    "Customer",
    "Lookup",
    "Reschedule",
    "apply_changes",
    "appointment_view",
    "availability_changed",
    "availability_generation",
    "booking_from_record",
    "check_showroom",
    "check_start",
    "check_token",
    "conflict",
    "hash_token",
    "interrupted",
    "key_reused",
    "lock_key",
    "manage_token",
    "new_reference",
    "pending_record",
    "reveal",
    "slot_candidates",
    "to_json",
    "token_key",
    "with_candidates",
    "within_horizon",
]

BOOKINGS_QUEUE = "bookings"
REPLAY_KIND = "booking.replay"

_REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


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


@dataclass(frozen=True, slots=True)
class BookReply:
    """The HTTP answer, stored with the key so a retry gets exactly this again."""

    status: int
    body: str


@dataclass(frozen=True, slots=True)
class Lookup:
    appointment_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Cancel:
    appointment_id: str
    token: str
    reason: str = "cancelled_by_customer"


@dataclass(frozen=True, slots=True)
class Reschedule:
    appointment_id: str
    token: str
    start: datetime
    consultant_id: str | None = None


type BookerMessage = Book | Cancel | Reschedule


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# What stored answers hold in place of the manage token; ``reveal`` puts it back.
TOKEN_MARKER = "<manage-token>"
_DEVELOPMENT_SECRET = DEVELOPMENT_TOKEN_SECRET.encode()


def token_key(secret: str | None) -> bytes:
    return secret.encode() if secret is not None else _DEVELOPMENT_SECRET


def manage_token(key: bytes, appointment_id: str) -> str:
    """The guest's manage token: derived, so no copy of it needs storing anywhere."""
    digest = hmac.new(key, f"manage-token:{appointment_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


_TOKEN_FIELD = f'"manage_token":"{TOKEN_MARKER}"'


def reveal(body: str, key: bytes) -> str:
    """A stored answer as the client gets it: the marker replaced by the token (in
    the ``manage_token`` field only: a customer's notes may say anything)."""
    if _TOKEN_FIELD not in body:
        return body
    appointment_id = msgspec.json.decode(body)["id"]
    token = manage_token(key, appointment_id)
    return body.replace(_TOKEN_FIELD, f'"manage_token":"{token}"', 1)


def check_token(appointment: Appointment, token: str) -> bool:
    return hmac.compare_digest(appointment.token_hash, hash_token(token))


def new_reference() -> str:
    """``LW-7K3Q-X9M2``: 40 random bits in Crockford base32 (no I, L, O, U)."""
    bits = int.from_bytes(secrets.token_bytes(5))
    chars = "".join(_REFERENCE_ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))
    return f"LW-{chars[:4]}-{chars[4:]}"


def appointment_view(a: Appointment) -> dict[str, Any]:
    """The JSON shape of an appointment (never the token or its hash)."""
    view: dict[str, Any] = {
        "id": a.id,
        "reference": a.reference,
        "status": a.status,
        "type": a.kind,
        "category": a.category,
        "start": local_iso(a.start),
        "end": local_iso(a.end),
        "consultant_id": a.consultant_id,
        "showroom_id": a.showroom_id,
        "customer": {
            "name": a.customer_name,
            "email": a.customer_email,
            "phone": a.customer_phone,
            "postcode": a.customer_postcode,
            "address": a.customer_address,
        },
        "notes": a.notes,
    }
    if a.status_reason is not None:
        view["status_reason"] = a.status_reason
    if a.previous_start is not None:
        view["previous_start"] = local_iso(a.previous_start)
    return view


def availability_generation(cache: Cache, day: date) -> str:
    """The counter bumped by every booking change on local ``day``: a free-slot list
    computed before a change is never cached after it."""
    return cache.key("avail-gen", day.isoformat())


def apply_changes(changes: CacheChanges, settings: BookingSettings) -> CacheOperation[None]:
    """The Redis operation for ``changes``: answers kept ``idempotency_keep_s``,
    generations a while past the stale copies they guard."""
    return changes.apply(
        keep_s=settings.idempotency_keep_s, bump_ttl_s=2 * settings.availability_stale_s
    )


def availability_changed(
    changes: CacheChanges, cache: Cache, consultant: Consultant, start: datetime
) -> None:
    """Add to ``changes`` what a change to this consultant-slot does to availability."""
    day = start.astimezone(LONDON).date()
    iso = day.isoformat()
    changes.deletes += [
        cache.key("avail", AppointmentType.ONLINE, "-", iso),
        cache.key("avail", AppointmentType.HOME_MEASUREMENT, "-", iso),
        cache.key("avail", AppointmentType.SHOWROOM, consultant.showroom_id, iso),
    ]
    changes.bumps.append(availability_generation(cache, day))


def lock_key(cache: Cache, consultant_id: str, start: datetime) -> str:
    return cache.key("slot", consultant_id, str(int(start.timestamp())))


_ENCODER = msgspec.json.Encoder()


def to_json(payload: Any) -> str:
    return _ENCODER.encode(payload).decode()


def error_body(code: str, message: str, field: str | None = None) -> str:
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return to_json({"error": error})


def interrupted() -> ConnectionLost:
    """A new error each time: one shared instance would collect every raiser's frames."""
    return ConnectionLost("the booking was interrupted: please retry", dependency="booker")


SLOT_TAKEN = BookReply(409, error_body("slot_taken", "that slot has just been taken", "start"))


def within_horizon(start: datetime, now: datetime, horizon_days: int) -> bool:
    """Bookings open ``horizon_days`` ahead: the one rule for booking and availability."""
    return start <= now + timedelta(days=horizon_days)


def check_showroom(roster: Roster, showroom_id: str | None) -> None:
    """422 ``unknown_showroom`` unless ``showroom_id`` is None or one of the roster's."""
    if showroom_id is not None and showroom_id not in roster.showrooms:
        raise InvalidRequest(
            "showroom_id: no such showroom", code="unknown_showroom", field="showroom_id"
        )


def check_start(start: datetime, now: datetime, horizon_days: int) -> None:
    """422 unless ``start`` (aware, UTC) is on the hour, ahead, and within the horizon."""
    if start.minute or start.second or start.microsecond:
        raise InvalidRequest("start: slots start on the hour", code="slot_off_grid", field="start")
    if start <= now:
        raise InvalidRequest("start: that slot is in the past", code="slot_in_past", field="start")
    if not within_horizon(start, now, horizon_days):
        raise InvalidRequest(
            f"start: bookings open {horizon_days} days ahead", code="slot_too_far", field="start"
        )


def slot_candidates(
    roster: Roster, request: BookingRequest, start: datetime, *, spread: int
) -> list[Consultant]:
    """Who could take this booking, in the order to try; 422 naming the field if nobody."""
    kind, category = request.kind, request.category
    check_showroom(roster, request.showroom_id)
    if request.consultant_id is not None:
        consultant = roster.consultant(request.consultant_id)
        if consultant is None:
            raise InvalidRequest(
                "consultant_id: no such consultant",
                code="unknown_consultant",
                field="consultant_id",
            )
        if not consultant.serves(kind, request.showroom_id, category):
            raise InvalidRequest(
                "consultant_id: this consultant does not take this type or category here",
                code="consultant_unsuitable",
                field="consultant_id",
            )
        if not consultant.works_at(start):
            raise InvalidRequest(
                "start: the consultant does not work then",
                code="slot_unavailable",
                field="start",
            )
        return [consultant]
    candidates = roster.candidates(kind, request.showroom_id, category, start, spread)
    if not candidates:
        raise InvalidRequest(
            "start: nobody takes this type of appointment then",
            code="slot_unavailable",
            field="start",
        )
    return candidates


def with_candidates(booking: NewBooking, candidates: tuple[str, ...]) -> NewBooking:
    return dataclasses.replace(booking, candidates=candidates)


def pending_record(b: NewBooking, consultant_id: str) -> dict[str, Any]:
    return {
        "id": b.id,
        "reference": b.reference,
        "kind": b.kind,
        "category": b.category,
        "consultant_id": consultant_id,
        "showroom_id": b.showroom_id,
        "start": b.start.isoformat(),
        "customer_name": b.customer_name,
        "customer_email": b.customer_email,
        "customer_phone": b.customer_phone,
        "customer_postcode": b.customer_postcode,
        "customer_address": b.customer_address,
        "notes": b.notes,
        "token_hash": b.token_hash.hex(),
        "idempotency_key": b.idempotency_key,
        "request_hash": b.request_hash.hex(),
    }


def booking_from_record(record: Any) -> NewBooking:
    start = datetime.fromisoformat(record["start"])
    return NewBooking(
        id=record["id"],
        reference=record["reference"],
        kind=record["kind"],
        category=record["category"],
        candidates=(record["consultant_id"],),
        showroom_id=record["showroom_id"],
        start=start,
        end=start + SLOT,
        customer_name=record["customer_name"],
        customer_email=record["customer_email"],
        customer_phone=record["customer_phone"],
        customer_postcode=record["customer_postcode"],
        customer_address=record["customer_address"],
        notes=record["notes"],
        token_hash=bytes.fromhex(record["token_hash"]),
        idempotency_key=record["idempotency_key"],
        request_hash=bytes.fromhex(record["request_hash"]),
    )


def key_reused() -> InvalidRequest:
    return InvalidRequest(
        "Idempotency-Key: already used with a different request body",
        code="idempotency_key_reused",
        field="Idempotency-Key",
    )


def conflict(code: str, message: str) -> LomashError:
    return Conflict(message, code=code)
