"""One booking on its way through a SlotBooker batch: what it asks, the slot lock it
holds, and its answer (shared with a concurrent duplicate of the same key)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trio

from actors._booking_messages import Book, BookReply
from actors._booking_rules import check_start, new_reference, slot_candidates
from actors._calendar import SLOT, AppointmentType, Roster, local_iso
from actors._tokens import TOKEN_MARKER, hash_token, manage_token
from adapters import NewBooking, SlotRef
from supervisors import LomashError

__all__ = ["BatchItem", "prepare_booking"]


@dataclass(slots=True)
class BatchItem:
    message: Book
    booking: NewBooking
    done: trio.Event = field(default_factory=trio.Event)
    reply: BookReply | None = None
    error: LomashError | None = None
    lock: SlotRef | None = None  # the slot lock this booking holds

    @property
    def consultant(self) -> str | None:
        """The consultant whose slot lock this booking holds: its first candidate."""
        return self.booking.candidates[0] if self.lock is not None else None

    def finish(self, reply: BookReply) -> None:
        self.reply = reply
        self.done.set()

    def fail(self, error: LomashError) -> None:
        self.error = error
        self.done.set()

    async def result(self) -> BookReply:
        await self.done.wait()
        if self.error is not None:
            # A copy per raiser: duplicates share the answer, not one traceback.
            error = type(self.error).__new__(type(self.error))
            error.__dict__.update(self.error.__dict__)
            error.args = self.error.args
            raise error
        assert self.reply is not None
        return self.reply

    def body(self, consultant_id: str, status: str) -> dict[str, Any]:
        """The booking's JSON answer (``manage_token`` a marker: see ``reveal``)."""
        b = self.booking
        request = self.message.request
        return {
            "id": b.id,
            "reference": b.reference,
            "status": status,
            "manage_token": TOKEN_MARKER,  # stored as is; the caller gets the token
            "type": b.kind,
            "category": b.category,
            "start": local_iso(b.start),
            "end": local_iso(b.end),
            "consultant_id": consultant_id,
            "showroom_id": b.showroom_id,
            "customer": {
                "name": request.customer.name,
                "email": request.customer.email,
                "phone": request.customer.phone,
                "postcode": request.customer.postcode,
                "address": request.customer.address,
            },
            "notes": b.notes,
        }

    def stored_answer(self, reply: BookReply) -> tuple[str, str]:
        """(idempotency key, answer) as the cache keeps it for a retry."""
        answer = {
            "request_hash": self.booking.request_hash.hex(),
            "status": reply.status,
            "body": reply.body,
        }
        return self.booking.idempotency_key, json.dumps(answer)


def prepare_booking(
    message: Book,
    key: str,
    roster: Roster,
    *,
    now: datetime,
    horizon_days: int,
    token_key: bytes,
) -> NewBooking:
    """The booking to write for ``message`` under the scoped ``key``: its start checked,
    its candidates in the order to try (spread by the key), a new id, reference and
    manage token (only the token's hash is kept)."""
    request = message.request
    start = request.start.astimezone(UTC)
    check_start(start, now, horizon_days)
    candidates = slot_candidates(roster, request, start, spread=hash(key))
    appointment_id = str(uuid.uuid4())
    token = manage_token(token_key, appointment_id)
    return NewBooking(
        id=appointment_id,
        reference=new_reference(),
        kind=request.kind.value,
        category=request.category.value,
        candidates=tuple(c.id for c in candidates),
        showroom_id=request.showroom_id if request.kind is AppointmentType.SHOWROOM else None,
        start=start,
        end=start + SLOT,
        customer_name=request.customer.name,
        customer_email=request.customer.email,
        customer_phone=request.customer.phone,
        customer_postcode=request.customer.postcode,
        customer_address=request.customer.address,
        notes=request.notes,
        token_hash=hash_token(token),
        idempotency_key=key,
        request_hash=message.request_hash,
        account_id=message.account_id,
    )
