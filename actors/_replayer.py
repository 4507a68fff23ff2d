"""The BookingReplayer: writes the bookings accepted (202 PENDING) while Postgres was down.

It handles the ``booking.replay`` jobs the SlotBooker queued. A replay writes the
booking CONFIRMED if its slot is still free, else (this actor's decision) CANCELLED
with the reason ``slot_taken_while_pending``; either way a notification job goes to
the outbox with the write, so the customer is told. Then the cache's hold is dropped.

- **Postgres still down**: the answer is ``RetryLater`` (every ``replay_retry_s``),
  which the job worker does not count as an attempt: an outage of any length never
  walks a pending booking into the dead-letter queue.
- **No hold**: the SlotBooker queues the job *before* it holds the slot, so a hold
  that failed (the customer was told 503 or 409) leaves a job with no pending record:
  it is skipped, once the batch that queued it is surely over (``flush_timeout_s``;
  before that the hold may still be on its way, and the job is retried later). A
  record older than ``pending_hold_s`` has expired with its hold: the booking is
  written anyway, and the database decides (the customer was told 202; they get
  CONFIRMED or CANCELLED, never silence).

Why an actor of its own: counted by the SlotBooker's breaker, replay failures would
open it and turn away the very bookings Redis can still hold.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from actors._booking_effects import apply_changes, availability_changed, notice
from actors._booking_views import booking_from_record
from actors._roster import RosterSource
from adapters import (
    Booked,
    BookingCache,
    BookingStore,
    CacheChanges,
    NewBooking,
    Payload,
    SlotRef,
    SlotTaken,
)
from config import BookingSettings
from jobs import RetryLater, RunJob
from supervisors import LomashError, is_outage

__all__ = ["LOST_WHILE_PENDING", "BookingReplayer"]

log = structlog.get_logger("actors.replayer")

LOST_WHILE_PENDING = "slot_taken_while_pending"
SKIPPED = "SKIPPED"


class BookingReplayer:
    def __init__(
        self,
        store: BookingStore,
        cache: BookingCache,
        roster: RosterSource,
        settings: BookingSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clock = clock
        self._store = store
        self._cache = cache
        self._roster = roster
        self._settings = settings

    async def handle(self, message: RunJob) -> str:
        """Write the pending booking: CONFIRMED, CANCELLED, or SKIPPED (never held)."""
        payload = message.job.payload
        booking = booking_from_record(payload)
        consultant_id = payload["consultant_id"]
        cache = self._cache
        if not await self._held(booking.id):
            age_s = self._clock().timestamp() - float(payload["accepted_at"])
            if age_s < self._settings.flush_timeout_s:
                # The hold comes right after the job: it may still be on its way.
                raise RetryLater("hold not settled yet", after_s=self._settings.replay_retry_s)
            if age_s < self._settings.pending_hold_s:
                log.info("booking_replay_skipped", appointment_id=booking.id, age_s=age_s)
                return SKIPPED
        try:
            status = await self._write(booking, consultant_id, payload)
        except LomashError as down:
            if not is_outage(down):
                raise  # a database bug is a failed attempt (then the DLQ), not a wait
            raise RetryLater(down.message, after_s=self._settings.replay_retry_s) from None
        log.info("booking_replayed", appointment_id=booking.id, status=status)
        try:
            # The database is the truth now: drop the hold and the pending record
            # (the stored answer stays: a retry must still find it first).
            slot = SlotRef(consultant_id, booking.start)
            await cache.release_pending(slot, booking.idempotency_key, booking.id)
            consultant = (await self._roster.current()).consultant(consultant_id)
            if consultant is not None:
                changes = CacheChanges()
                availability_changed(changes, consultant, booking.start)
                await apply_changes(cache, changes, self._settings)
        except LomashError as error:
            if not is_outage(error):
                raise  # a bug: the job fails and is retried, then dead-lettered
            log.info("pending_hold_left_to_expire", error=error.message)
        return status

    async def _write(self, booking: NewBooking, consultant_id: str, payload: Payload) -> str:
        """CONFIRMED if the slot is still free; else the customer loses it: CANCELLED
        with ``LOST_WHILE_PENDING``, and told so. Either way, notified once."""
        written = await self._store.write_replayed(
            booking,
            consultant_id,
            payload["response_status"],
            payload["response"],
            notice("appointment.confirmed", booking.id),
        )
        if isinstance(written, Booked):
            return "CONFIRMED"
        if isinstance(written, SlotTaken):
            lost = notice("appointment.cancelled", booking.id, reason=LOST_WHILE_PENDING)
            return await self._store.record_lost(booking, consultant_id, LOST_WHILE_PENDING, lost)
        return written

    async def _held(self, booking_id: str) -> bool:
        try:
            return await self._cache.pending(booking_id) is not None
        except LomashError as error:
            if not is_outage(error):
                raise  # not an outage: counted as a failed attempt, never waited out
            # Cannot tell without Redis: try again later.
            raise RetryLater(error.message, after_s=self._settings.replay_retry_s) from None
