"""Changing a booking: cancel and reschedule, for the SlotBooker.

The booker's mailbox and breaker guard these as they guard bookings (one writer of
appointments); the rules are here. A change goes to the store with the notice the
customer gets (``appointment.cancelled``, ``appointment.rescheduled``: each move its
own, so A -> B -> A notifies twice); a reschedule respects the slot locks bookings
respect; afterwards the freed slot's lock goes and the days' availability is stale.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from actors._booking_effects import apply_best_effort, availability_changed, notice
from actors._booking_messages import BookingRequest, Cancel, Customer, Reschedule
from actors._booking_rules import check_start, conflict, slot_candidates
from actors._calendar import SLOT, AppointmentType, Category, Roster
from actors._reader import find_booking
from actors._roster import RosterSource
from adapters import (
    Appointment,
    BookingCache,
    BookingStore,
    CacheChanges,
    LockRequest,
    SlotRef,
    SlotTaken,
)
from config import BookingSettings
from supervisors import LomashError, NotFound

__all__ = ["BookingChanges"]


class BookingChanges:
    def __init__(
        self,
        store: BookingStore,
        cache: BookingCache,
        roster: RosterSource,
        settings: BookingSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._cache = cache
        self._roster = roster
        self._settings = settings
        self._clock = clock

    async def cancel(self, message: Cancel) -> Appointment:
        current = await find_booking(
            self._store, self._cache, message.appointment_id, message.token, message.account_id
        )
        if current.status == "PENDING" and current.status_reason is None:
            raise conflict("booking_pending", "this booking is being confirmed: try again shortly")
        if current.status in ("COMPLETED", "NO_SHOW"):
            raise conflict("not_cancellable", f"a {current.status} appointment cannot be cancelled")
        cancelled = notice("appointment.cancelled", current.id, reason=message.reason)
        after = await self._store.cancel(current.id, message.reason, cancelled)
        assert after is not None
        if current.status != "CANCELLED":
            roster = await self._roster.current()
            await self._apply(self._slot_freed(roster, current.consultant_id, current.start))
        return after

    async def reschedule(self, message: Reschedule) -> Appointment:
        current = await find_booking(
            self._store, self._cache, message.appointment_id, message.token, message.account_id
        )
        if current.status not in ("CONFIRMED", "RESCHEDULED"):
            raise conflict(
                "not_reschedulable", f"a {current.status} appointment cannot be rescheduled"
            )
        start = message.start.astimezone(UTC)
        request = BookingRequest(
            kind=AppointmentType(current.kind),
            category=Category(current.category),
            start=start,
            customer=Customer("-", "-", "-", "-"),
            showroom_id=current.showroom_id,
            consultant_id=message.consultant_id,
        )
        check_start(start, self._clock(), self._settings.horizon_days)
        roster = await self._roster.current()
        candidates = [c.id for c in slot_candidates(roster, request, start, spread=0)]
        if message.consultant_id is None and current.consultant_id in candidates:
            candidates.remove(current.consultant_id)
            candidates.insert(0, current.consultant_id)
        candidates, lock = await self._lock_for_move(current.id, candidates, start)
        # Each move is news: its own job id (A -> B -> A -> B notifies thrice).
        moved_notice = notice(
            "appointment.rescheduled",
            current.id,
            version=uuid.uuid4().hex,
            previous_start=current.start.isoformat(),
            start=start.isoformat(),
        )
        moved = await self._store.reschedule(
            current.id, candidates, start, start + SLOT, moved_notice
        )
        if moved is None or isinstance(moved, SlotTaken):
            if lock is not None:
                await self._apply(CacheChanges(releases=[lock]))
            if moved is None:
                raise NotFound("no such appointment")
            raise conflict("slot_taken", "that slot has just been taken")
        if moved.status != "RESCHEDULED" or moved.start != start:
            raise conflict("not_reschedulable", "this appointment cannot be rescheduled")
        changes = self._slot_freed(roster, current.consultant_id, current.start)
        consultant = roster.consultant(moved.consultant_id)
        if consultant is not None:
            availability_changed(changes, consultant, start)
        await self._apply(changes)
        return moved

    async def _lock_for_move(
        self, appointment_id: str, candidates: list[str], start: datetime
    ) -> tuple[list[str], tuple[SlotRef, str] | None]:
        """A reschedule respects the slot locks and holds bookings respect: the
        candidates in lock-first order and the lock taken; 409 if all are held."""
        value = f"reschedule:{appointment_id}"
        slots = tuple(SlotRef(c, start) for c in candidates)
        request = LockRequest(answer_key=None, holder=value, slots=slots)
        try:
            [reply] = await self._cache.take_locks([request], self._settings.lock_s)
        except LomashError:  # no Redis: the constraint alone decides
            return candidates, None
        if reply.locked is None:
            raise conflict("slot_taken", "that slot has just been taken")
        chosen = [candidates[reply.locked], *(candidates[j] for j in reply.free)]
        return chosen, (slots[reply.locked], value)

    def _slot_freed(self, roster: Roster, consultant_id: str, start: datetime) -> CacheChanges:
        """The lock of a slot given up goes (anyone may book it now), and its day's
        availability is stale."""
        changes = CacheChanges(frees=[SlotRef(consultant_id, start)])
        consultant = roster.consultant(consultant_id)
        if consultant is not None:
            availability_changed(changes, consultant, start)
        return changes

    async def _apply(self, changes: CacheChanges) -> None:
        await apply_best_effort(self._cache, changes, self._settings)
