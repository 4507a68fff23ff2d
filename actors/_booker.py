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

Idempotency: a key is scoped to the route; the same key and body gets the first
response again (status and body), a different body 422 ``idempotency_key_reused``;
a concurrent duplicate in this process waits for the first and shares its answer,
one in another process waits on the key's row in Postgres.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
import trio

from actors._booking_effects import apply_changes, availability_changed, notice
from actors._booking_messages import (
    BOOKINGS_QUEUE,
    REPLAY_KIND,
    Book,
    BookerMessage,
    BookingRequest,
    BookReply,
    Cancel,
    Customer,
    Reschedule,
)
from actors._booking_rules import (
    SLOT_TAKEN,
    check_start,
    conflict,
    interrupted,
    key_reused,
    new_reference,
    slot_candidates,
    to_json,
)
from actors._booking_views import pending_record, with_candidates
from actors._calendar import (
    SLOT,
    AppointmentType,
    Category,
    Roster,
    local_iso,
)
from actors._reader import find_booking
from actors._roster import RosterSource
from actors._tokens import TOKEN_MARKER, hash_token, manage_token, reveal, token_key
from adapters import (
    Appointment,
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
from config import BookingSettings, MailboxSettings, RuntimeSettings
from jobs import JobQueue
from supervisors import (
    ConnectionLost,
    Contention,
    LomashError,
    NotFound,
    OperationTimeout,
    is_outage,
)

__all__ = ["SlotBooker", "booker_mailbox"]

log = structlog.get_logger("actors.booker")

_CONTENTION_RETRIES = 3


@dataclass(slots=True)
class _Item:
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


class SlotBooker:
    """The behaviour (the tree wraps it in an ActorSpec with ``booker_mailbox``)."""

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
        self._inflight: dict[str, _Item] = {}
        # Group commit without a task of its own: the handlers of waiting bookings
        # take turns leading a batch, at most ``flushers`` batches at once. Both
        # structures hold one entry per running handler at most: the mailbox's
        # concurrency bounds them.
        self._waiting: deque[_Item] = deque()
        self._leading = 0
        self._progress = trio.Event()

    async def handle(self, message: BookerMessage) -> Any:
        match message:
            case Book():
                return await self._book(message)
            case Cancel():
                return await self._cancel(message)
            case Reschedule():
                return await self._reschedule(message)

    # -- booking ------------------------------------------------------------------

    async def _book(self, message: Book) -> BookReply:
        key = f"appointments:{message.idempotency_key}"
        roster = await self._roster.current()
        # No await from here to registering the item: a same-key request arriving
        # meanwhile must find it (two of them in one batch would book twice).
        first = self._inflight.get(key)
        if first is not None:  # a concurrent duplicate: share the first one's answer
            if first.message.request_hash != message.request_hash:
                raise key_reused()
            return self._reveal(await first.result())
        booking = self._prepare(message, key, roster)
        item = _Item(message, booking)
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

    async def _until_done(self, item: _Item) -> None:
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

    def _prepare(self, message: Book, key: str, roster: Roster) -> NewBooking:
        request = message.request
        start = request.start.astimezone(UTC)
        check_start(start, self._clock(), self._settings.horizon_days)
        candidates = slot_candidates(roster, request, start, spread=hash(key))
        appointment_id = str(uuid.uuid4())
        token = manage_token(self._token_key, appointment_id)
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
        )

    async def _flush(self, batch: list[_Item]) -> None:
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
                changes.answers.append(self._stored_answer(item, reply))
            if isinstance(reply, BookReply):
                item.reply = reply  # decided: given even if the deadline hits below
            replies.append(reply)
        await self._apply(changes)
        for item, reply in zip(ready, replies, strict=True):
            if isinstance(reply, BookReply):
                item.finish(reply)
            else:
                item.fail(reply)

    async def _lock_slots(self, batch: list[_Item]) -> list[_Item]:
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
        ready: list[_Item] = []
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

    async def _write(self, ready: list[_Item]) -> list[BatchOutcome]:
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

    def _render(self, item: _Item, outcome: Booked | SlotTaken) -> BookReply:
        if isinstance(outcome, SlotTaken):
            return SLOT_TAKEN
        return BookReply(201, to_json(self._booking_body(item, outcome.consultant_id, "CONFIRMED")))

    def _booking_body(self, item: _Item, consultant_id: str, status: str) -> dict[str, Any]:
        b = item.booking
        request = item.message.request
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

    async def _accept_pending(self, ready: list[_Item], lost: LomashError) -> None:
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

    async def _hold(self, item: _Item, lock: SlotRef, consultant_id: str) -> BookReply:
        b = item.booking
        body = self._booking_body(item, consultant_id, "PENDING")
        body["message"] = "accepted: it will be confirmed by email shortly"
        reply = BookReply(202, to_json(body))
        record = pending_record(b, consultant_id)
        stored = json.dumps(
            {"request_hash": b.request_hash.hex(), "status": reply.status, "body": reply.body}
        )
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
            answer=stored,
            record=record,
            hold_s=self._settings.pending_hold_s,
            keep_s=self._settings.idempotency_keep_s,
        )
        if not held:
            return SLOT_TAKEN
        log.info("booking_pending", appointment_id=b.id)
        return reply

    def _release_lock(self, changes: CacheChanges, item: _Item) -> None:
        if item.lock is not None:
            changes.releases.append((item.lock, item.booking.idempotency_key))

    def _stored_answer(self, item: _Item, reply: BookReply) -> tuple[str, str]:
        answer = {
            "request_hash": item.booking.request_hash.hex(),
            "status": reply.status,
            "body": reply.body,
        }
        return item.booking.idempotency_key, json.dumps(answer)

    async def _apply(self, changes: CacheChanges) -> None:
        """Apply cache changes, best effort: a missed one expires by TTL."""
        if not changes:
            return
        try:
            await apply_changes(self._cache, changes, self._settings)
        except LomashError as error:
            # Best effort either way (the booking is written); a failure that is no
            # outage is a bug and says so.
            report = log.info if is_outage(error) else log.error
            report("cache_changes_skipped", error_type=type(error).__name__, error=error.message)

    # -- reading and changing a booking -----------------------------------------------

    async def _cancel(self, message: Cancel) -> Appointment:
        current = await find_booking(
            self._store, self._cache, message.appointment_id, message.token
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

    async def _reschedule(self, message: Reschedule) -> Appointment:
        current = await find_booking(
            self._store, self._cache, message.appointment_id, message.token
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
        moved_notice = notice("appointment.rescheduled", current.id, version=uuid.uuid4().hex)
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


def booker_mailbox(settings: BookingSettings, runtime: RuntimeSettings) -> MailboxSettings:
    """Enough handlers at once to fill every flusher's batch and the next one; the
    rest wait in the bounded mailbox (full: 503 ``overloaded``). A booking may take
    as long as its batch (``flush_timeout_s``): its caller waits that long, not less,
    so nobody is told "timeout" about a booking that is then written."""
    message_timeout_s = settings.flush_timeout_s + settings.answer_margin_s
    return dataclasses.replace(
        runtime.mailbox,
        capacity=settings.mailbox_capacity,
        concurrency=settings.batch_max * (settings.flushers + 1),
        message_timeout_s=message_timeout_s,
        ask_timeout_s=max(
            runtime.mailbox.ask_timeout_s, message_timeout_s + settings.answer_margin_s
        ),
    )
