"""A booking's records beyond the messages: its JSON view, the record a pending
booking keeps in the cache, and that record read back."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from actors._calendar import (
    SLOT,
    local_iso,
)
from adapters import Appointment, NewBooking

__all__ = [
    "appointment_view",
    "booking_from_record",
    "pending_record",
    "with_candidates",
]


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
        "account_id": b.account_id,
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
        account_id=record.get("account_id"),  # absent in records older than accounts
    )
