"""The booking rules that need no I/O (a requested slot against the roster and the
horizon, who may take it), references, and the refusals the booker gives."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import msgspec

from actors._booking_messages import BookingRequest, BookReply
from actors._calendar import (
    Consultant,
    Roster,
)
from supervisors import Conflict, ConnectionLost, InvalidRequest, LomashError

__all__ = [
    "SLOT_TAKEN",
    "check_showroom",
    "check_start",
    "conflict",
    "error_body",
    "horizon_end",
    "interrupted",
    "key_reused",
    "new_reference",
    "scoped_key",
    "slot_candidates",
    "to_json",
    "within_horizon",
]


_REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def new_reference() -> str:
    """``LW-7K3Q-X9M2``: 40 random bits in Crockford base32 (no I, L, O, U)."""
    bits = int.from_bytes(secrets.token_bytes(5))
    chars = "".join(_REFERENCE_ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))
    return f"LW-{chars[:4]}-{chars[4:]}"


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
    return start <= horizon_end(now, horizon_days)


def horizon_end(now: datetime, horizon_days: int) -> datetime:
    """The last start bookable at ``now``."""
    return now + timedelta(days=horizon_days)


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


def scoped_key(route: str, key: str, account_id: str | None) -> str:
    """The stored form of a client's Idempotency-Key: ``route:key`` for a guest,
    ``route@account:key`` for an account. A guest's key is visible ASCII, so the
    character after the route (``:`` or ``@``) tells the two apart: no guest key can
    reach (or replay) an account's answer, nor one account another's."""
    return f"{route}:{key}" if account_id is None else f"{route}@{account_id}:{key}"


def key_reused() -> InvalidRequest:
    return InvalidRequest(
        "Idempotency-Key: already used with a different request body",
        code="idempotency_key_reused",
        field="Idempotency-Key",
    )


def conflict(code: str, message: str) -> LomashError:
    return Conflict(message, code=code)
