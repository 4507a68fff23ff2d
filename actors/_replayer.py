"""The BookingReplayer: writes the bookings accepted (202 PENDING) while Postgres was down.

It handles the ``booking.replay`` jobs the SlotBooker queued. A replay writes the
booking CONFIRMED if its slot is still free, else CANCELLED with the reason
``slot_taken_while_pending``; either way a notification job goes to the outbox in
the same transaction, so the customer is told. Then the Redis hold is dropped.

Why an actor of its own: while Postgres is down every replay attempt fails (the job
queue retries it with backoff, ``replay_attempts`` times); counted by the
SlotBooker's breaker, those failures would open it and turn away the very bookings
Redis can still hold. The replayer has no breaker: the queue's backoff paces it.
"""

from __future__ import annotations

import structlog

from actors._bookings import availability_keys, booking_from_record, lock_key
from actors._roster import RosterSource
from actors._worker import RunJob
from adapters import Cache, Database, delete_keys, release_pending, replay_pending
from supervisors import LomashError

__all__ = ["LOST_WHILE_PENDING", "BookingReplayer"]

log = structlog.get_logger("actors.replayer")

LOST_WHILE_PENDING = "slot_taken_while_pending"


class BookingReplayer:
    def __init__(self, database: Database, cache: Cache, roster: RosterSource) -> None:
        self._database = database
        self._cache = cache
        self._roster = roster

    async def handle(self, message: RunJob) -> str:
        """Write the pending booking; its final status (CONFIRMED or CANCELLED)."""
        payload = message.job.payload
        booking = booking_from_record(payload)
        consultant_id = payload["consultant_id"]
        status = await self._database.run(
            replay_pending(
                booking,
                consultant_id,
                payload["response_status"],
                payload["response"],
                LOST_WHILE_PENDING,
            )
        )
        log.info("booking_replayed", appointment_id=booking.id, status=status)
        cache = self._cache
        try:
            # The database is the truth now: drop the hold and the pending record.
            lock = lock_key(cache, consultant_id, booking.start)
            pending = cache.key("pending", booking.id)
            await cache.run(release_pending(lock, booking.idempotency_key, pending))
            consultant = (await self._roster.current()).consultant(consultant_id)
            if consultant is not None:
                await cache.run(delete_keys(availability_keys(cache, consultant, booking.start)))
        except LomashError as error:
            log.info("pending_hold_left_to_expire", error=error.message)
        return status
