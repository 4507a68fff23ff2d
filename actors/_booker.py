"""The SlotBooker: the one writer of appointments, with group commit.

Messages: ``Book`` (POST /v1/appointments), ``Cancel``, ``Reschedule`` (reads are the
BookingReader's: actors/_reader.py; the ``booking.replay`` job is the
BookingReplayer's: actors/_replayer.py). Its
mailbox handles many messages at once (each ``Book`` handler only waits for its
batch), so its policies apply per booking: bounded mailbox -> 503 ``overloaded``
when full; the breaker opens when bookings fail outright (both Postgres and Redis
down), answering 503 at the door.

A ``Book`` goes through a batch (``flushers`` batches in flight, up to ``batch_max``
bookings each):

1. Redis, one script for the batch: a retry of a key answered while Postgres was
   down gets that answer again; every other booking takes the lock of its
   consultant-slot (or of the first free candidate when any consultant will do). A
   slot locked by another request is ``409 slot_taken`` at once. Redis down: skipped.
2. Postgres, one transaction for the batch (``adapters.book_batch``): idempotency
   keys, appointments under the EXCLUDE constraint, stored responses, outbox jobs.
3. Postgres down (``ConnectionLost``): a booking whose slot lock is held is accepted
   as ``202 PENDING``: the slot is held for ``pending_hold_s`` and a ``booking.replay``
   job is queued (Redis); the replay writes it CONFIRMED, or CANCELLED with a reason
   if the slot was lost meanwhile, and the customer is notified either way. Without
   a lock (Redis down too) the booking is refused with 503: nothing half-written.

Idempotency: a key is scoped to the route and to the caller's account, if any; the
same key and body gets the first response again (status and body), a different body
422 ``idempotency_key_reused``;
a concurrent duplicate in this process waits for the first and shares its answer,
one in another process waits on the key's row in Postgres.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
import trio

from actors._booking_changes import BookingChanges
from actors._booking_effects import apply_best_effort, availability_changed, notice
from actors._booking_item import BatchItem, prepare_booking
from actors._booking_messages import (
    BOOKINGS_QUEUE,
    REPLAY_KIND,
    Book,
    BookerMessage,
    BookReply,
    Cancel,
    Reschedule,
)
from actors._booking_rules import (
    SLOT_TAKEN,
    conflict,
    interrupted,
    key_reused,
    scoped_key,
    to_json,
)
from actors._booking_views import pending_record, with_candidates
from actors._roster import RosterSource
from actors._tokens import reveal, token_key
from adapters import (
    BatchOutcome,
    Booked,
    BookingCache,
    BookingStore,
    CacheChanges,
    KeyReplay,
    LimitReached,
    LockReply,
    LockRequest,
    NewBooking,
    OutboxJob,
    SlotRef,
    SlotTaken,
)
from config import BookingSettings
from jobs import JobQueue
from supervisors import (
    ConnectionLost,
    Contention,
    LomashError,
    OperationTimeout,
)

__all__ = ["SlotBooker"]

log = structlog.get_logger("actors.booker")

_CONTENTION_RETRIES = 3


class SlotBooker:
    """The behaviour (the tree wraps it in an ActorSpec with ``config.booker_mailbox``)."""

    def __init__(
        self,
        store: BookingStore,
        cache: BookingCache,
        jobs: JobQueue,
        roster: RosterSource,
        settings: BookingSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._cache = cache
        self._jobs = jobs
        self._roster = roster
        self._settings = settings
        self._clock = clock
        self._token_key = token_key(settings.token_secret)
        self._changes = BookingChanges(store, cache, roster, settings, clock)
        self._inflight: dict[str, BatchItem] = {}
        # Group commit without a task of its own: the handlers of waiting bookings
        # take turns leading a batch, at most ``flushers`` batches at once. Both
        # structures hold one entry per running handler at most: the mailbox's
        # concurrency bounds them.
        self._waiting: deque[BatchItem] = deque()
        self._leading = 0
        self._progress = trio.Event()

    async def handle(self, message: BookerMessage) -> Any:
        match message:
            case Book():
                return await self._book(message)
            case Cancel():
                return await self._changes.cancel(message)
            case Reschedule():
                return await self._changes.reschedule(message)

    # -- booking ------------------------------------------------------------------

    async def _book(self, message: Book) -> BookReply:
        key = scoped_key("appointments", message.idempotency_key, message.account_id)
        roster = await self._roster.current()
        # No await from here to registering the item: a same-key request arriving
        # meanwhile must find it (two of them in one batch would book twice).
        first = self._inflight.get(key)
        if first is not None:  # a concurrent duplicate: share the first one's answer
            if first.message.request_hash != message.request_hash:
                raise key_reused()
            return self._reveal(await first.result())
        booking = prepare_booking(
            message,
            key,
            roster,
            now=self._clock(),
            horizon_days=self._settings.horizon_days,
            token_key=self._token_key,
        )
        item = BatchItem(message, booking)
        self._inflight[key] = item
        self._waiting.append(item)
        try:
            await self._until_done(item)
        finally:
            if item in self._waiting:  # given up (timeout) before any batch took it
                self._waiting.remove(item)
                item.fail(interrupted())
            if item.done.is_set() and self._inflight.get(key) is item:
                del self._inflight[key]  # answered (a batch's leader removes the others)
        return self._reveal(await item.result())

    def _reveal(self, reply: BookReply) -> BookReply:
        """Answers are stored without the manage token; the caller gets it."""
        return BookReply(reply.status, reveal(reply.body, self._token_key))

    async def _until_done(self, item: BatchItem) -> None:
        """Lead a batch while fewer than ``flushers`` are in flight, else wait for one
        to end; until this booking has its answer."""
        while not item.done.is_set():
            if self._leading >= self._settings.flushers or not self._waiting:
                await self._progress.wait()
                continue
            size = min(len(self._waiting), self._settings.batch_max)
            batch = [self._waiting.popleft() for _ in range(size)]
            self._leading += 1
            try:
                # Shielded: the batch belongs to every booking in it, not only to
                # this request's caller; bounded by its own deadline instead.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + self._settings.flush_timeout_s
                    await self._flush(batch)
                if scope.cancelled_caught:
                    log.error("booking_batch_timed_out", size=len(batch))
            finally:
                self._leading -= 1
                for done in batch:
                    if done.done.is_set():
                        pass
                    elif done.reply is not None:  # decided before the deadline hit
                        done.finish(done.reply)
                    else:
                        done.fail(interrupted())
                    key = done.booking.idempotency_key
                    if self._inflight.get(key) is done:
                        del self._inflight[key]
                self._progress.set()
                self._progress = trio.Event()

    async def _flush(self, batch: list[BatchItem]) -> None:
        ready = await self._lock_slots(batch)
        if not ready:
            return
        try:
            outcomes = await self._write(ready)
        except (ConnectionLost, OperationTimeout) as lost:
            await self._accept_pending(ready, lost)
            return
        except LomashError as error:
            changes = CacheChanges()
            for item in ready:
                self._release_lock(changes, item)
                item.fail(error)
            await self._apply(changes)
            return
        roster = await self._roster.current()
        changes = CacheChanges()
        replies: list[BookReply | LomashError] = []
        for item, outcome in zip(ready, outcomes, strict=True):
            reply: BookReply | LomashError
            if isinstance(outcome, KeyReplay):
                if outcome.request_hash != item.booking.request_hash:
                    reply = key_reused()
                else:
                    reply = BookReply(outcome.status, outcome.response)
            elif isinstance(outcome, LimitReached):
                # Not stored under the key: once one of them is cancelled, the same
                # key may book.
                reply = conflict(
                    "too_many_bookings",
                    f"this customer already has {self._settings.max_active_per_customer} "
                    "upcoming appointments: cancel one first",
                )
            else:
                reply = self._render(item, outcome)
            if isinstance(outcome, Booked) and outcome.consultant_id == item.consultant:
                pass  # the lock guards the slot just booked: it expires by itself
            else:
                self._release_lock(changes, item)
            if isinstance(outcome, Booked):
                consultant = roster.consultant(outcome.consultant_id)
                if consultant is not None:
                    availability_changed(changes, consultant, item.booking.start)
            if isinstance(reply, BookReply):
                # Redis learns every answer: a retry whose slot lock someone else
                # holds must still get this answer, not a 409.
                changes.answers.append(item.stored_answer(reply))
            if isinstance(reply, BookReply):
                item.reply = reply  # decided: given even if the deadline hits below
            replies.append(reply)
        await self._apply(changes)
        for item, reply in zip(ready, replies, strict=True):
            if isinstance(reply, BookReply):
                item.finish(reply)
            else:
                item.fail(reply)

    async def _lock_slots(self, batch: list[BatchItem]) -> list[BatchItem]:
        """Take each booking's slot lock; answer the replays and the fast refusals.
        The bookings still to write, with their candidates in lock-first order."""
        requests = [
            LockRequest(
                answer_key=item.booking.idempotency_key,
                holder=item.booking.idempotency_key,
                slots=tuple(SlotRef(c, item.booking.start) for c in item.booking.candidates),
            )
            for item in batch
        ]
        replies: Sequence[LockReply | None]
        try:
            replies = await self._cache.take_locks(requests, self._settings.lock_s)
        except LomashError as error:
            log.info("slot_locks_unavailable", error=error.message)
            replies = [None] * len(batch)
        ready: list[BatchItem] = []
        for item, request, reply in zip(batch, requests, replies, strict=True):
            if reply is None:
                ready.append(item)
            elif reply.replay is not None:
                stored = json.loads(reply.replay)
                if bytes.fromhex(stored["request_hash"]) != item.booking.request_hash:
                    item.fail(key_reused())
                else:
                    item.finish(BookReply(stored["status"], stored["body"]))
            elif reply.locked is None:
                item.finish(SLOT_TAKEN)
            else:
                # The lock taken first, then only candidates nobody held: a slot
                # held for a pending booking (or in flight) is never a fallback.
                candidates = item.booking.candidates
                chosen = candidates[reply.locked]
                others = tuple(candidates[j] for j in reply.free)
                item.booking = with_candidates(item.booking, (chosen, *others))
                item.lock = request.slots[reply.locked]
                ready.append(item)
        return ready

    async def _write(self, ready: list[BatchItem]) -> list[BatchOutcome]:
        by_id = {item.booking.id: item for item in ready}

        def render(booking: NewBooking, outcome: Booked | SlotTaken) -> tuple[int, str]:
            reply = self._render(by_id[booking.id], outcome)
            return reply.status, reply.body

        def confirmed(booking: NewBooking) -> OutboxJob:
            return notice("appointment.confirmed", booking.id)

        batch = [item.booking for item in ready]
        cap = self._settings.max_active_per_customer
        for attempt in range(_CONTENTION_RETRIES + self._settings.write_retries + 1):
            try:
                return await self._store.book(batch, render, confirmed, max_active_per_customer=cap)
            except Contention:
                if attempt >= _CONTENTION_RETRIES:
                    raise
                log.info("booking_batch_deadlock_retried", size=len(ready))
            except ConnectionLost:
                if attempt >= self._settings.write_retries:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _render(self, item: BatchItem, outcome: Booked | SlotTaken) -> BookReply:
        if isinstance(outcome, SlotTaken):
            return SLOT_TAKEN
        return BookReply(201, to_json(item.body(outcome.consultant_id, "CONFIRMED")))

    async def _accept_pending(self, ready: list[BatchItem], lost: LomashError) -> None:
        """Postgres is down: hold what Redis can hold, refuse the rest (503)."""
        log.warning("bookings_pending", count=len(ready), error=lost.message)
        roster = await self._roster.current()
        changes = CacheChanges()
        for item in ready:
            if item.lock is None or item.consultant is None:
                item.fail(ConnectionLost(lost.message, dependency="postgres"))
                continue
            try:
                reply = await self._hold(item, item.lock, item.consultant)
            except LomashError as error:
                log.warning("booking_not_held", error=error.message)
                item.fail(ConnectionLost(lost.message, dependency="postgres"))
                continue
            consultant = roster.consultant(item.consultant)
            if consultant is not None and reply.status == 202:
                availability_changed(changes, consultant, item.booking.start)
            item.reply = reply
        # Availability is served from the stale copy minus held slots from now on.
        await self._apply(changes)
        for item in ready:
            if item.reply is not None:
                item.finish(item.reply)

    async def _hold(self, item: BatchItem, lock: SlotRef, consultant_id: str) -> BookReply:
        b = item.booking
        body = item.body(consultant_id, "PENDING")
        body["message"] = "accepted: it will be confirmed by email shortly"
        reply = BookReply(202, to_json(body))
        record = pending_record(b, consultant_id)
        # The replay job first: a hold without its job would never be written; a job
        # without its hold (the hold failed: the caller hears 503 or 409) is skipped.
        payload = {
            **record,
            "response_status": reply.status,
            "response": reply.body,
            "accepted_at": self._clock().timestamp(),
        }
        await self._jobs.enqueue(BOOKINGS_QUEUE, REPLAY_KIND, payload, job_id=b.id)
        held = await self._cache.hold_pending(
            lock,
            b.idempotency_key,
            booking_id=b.id,
            answer=item.stored_answer(reply)[1],
            record=record,
            hold_s=self._settings.pending_hold_s,
            keep_s=self._settings.idempotency_keep_s,
        )
        if not held:
            return SLOT_TAKEN
        log.info("booking_pending", appointment_id=b.id)
        return reply

    def _release_lock(self, changes: CacheChanges, item: BatchItem) -> None:
        if item.lock is not None:
            changes.releases.append((item.lock, item.booking.idempotency_key))

    async def _apply(self, changes: CacheChanges) -> None:
        await apply_best_effort(self._cache, changes, self._settings)
