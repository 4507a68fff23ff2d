"""Slot booking: locks, holds, caches, batching, idempotency, limits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from config._check import check as _check
from config._runtime import MailboxSettings, RuntimeSettings

__all__ = ["BookingSettings", "booker_mailbox", "replayer_mailbox"]


@dataclass(frozen=True, slots=True)
class BookingSettings:
    """Slot booking: locks, holds, caches, batching, idempotency (actors/_booker.py)."""

    # A consultant-slot lock in Redis: concurrent attempts at the slot fail fast.
    lock_s: float = 10.0
    # A slot held for a booking accepted (202 PENDING) while Postgres is down: until
    # the replay confirms it, at most this long.
    pending_hold_s: float = 24 * 3600.0
    # While Postgres is down a replay job is handed back for this long, uncounted
    # (RetryLater): however long the outage, a pending booking is not dead-lettered.
    replay_retry_s: float = 5.0
    # Idempotency keys (and the first response) are kept at least this long.
    idempotency_keep_s: float = 48 * 3600.0
    # Availability in Redis: fresh for this long, and a stale copy served (minus
    # held slots) while Postgres is down.
    availability_fresh_s: float = 30.0
    availability_stale_s: float = 24 * 3600.0
    # Availability in each process's memory (a warm read asks neither Redis nor
    # Postgres): a day is kept this long at most, and forgotten as soon as any
    # process changes it (the process follows the changes' channel; without it
    # nothing is kept). 0: every read asks Redis.
    availability_memory_s: float = 5.0
    # Longest availability range, in days, and how far ahead a booking may be.
    max_range_days: int = 31
    horizon_days: int = 180
    # How often the consultants' hours are reloaded from Postgres.
    schedule_refresh_s: float = 60.0
    # Group commit: up to this many bookings in one database round trip, with this
    # many round trips in flight at once.
    batch_max: int = 64
    flushers: int = 2
    # A batch (Redis locks, the transaction, the pending path) gets this long; then
    # its undecided bookings are answered 503 (a retry with the same key learns the
    # outcome). The SlotBooker's callers wait this long plus answer_margin_s, not
    # less; it must leave room for the Redis locks, a call that times out (database
    # call_timeout_s) and the pending path after it, and end well inside the
    # request's budget (http.request_timeout_s) and a client's 10 s.
    flush_timeout_s: float = 6.5
    # How long after a batch's deadline its callers still wait for their answer.
    answer_margin_s: float = 0.5
    # Guests' manage tokens are HMAC-SHA256(secret, appointment id): never stored,
    # not even in the idempotency records. Required in production; elsewhere a fixed
    # development secret is used (tokens then are forgeable: development only).
    token_secret: str | None = field(default=None, repr=False)
    # Bookings waiting in the SlotBooker's mailbox before new ones get 503.
    mailbox_capacity: int = 1024
    # A ConnectionLost write is retried in place this often before the pending path.
    write_retries: int = 1
    # Active future bookings one customer (by e-mail, and by phone digits) may hold;
    # one more is refused 409 too_many_bookings (checked in the booking transaction).
    max_active_per_customer: int = 5

    def __post_init__(self) -> None:
        for name in (
            "lock_s",
            "pending_hold_s",
            "replay_retry_s",
            "idempotency_keep_s",
            "availability_fresh_s",
            "availability_stale_s",
            "schedule_refresh_s",
            "flush_timeout_s",
            "answer_margin_s",
        ):
            _check(getattr(self, name) > 0, f"{name}: must be > 0")
        for name in ("max_range_days", "horizon_days", "batch_max", "flushers"):
            _check(getattr(self, name) >= 1, f"{name}: must be >= 1")
        _check(self.availability_memory_s >= 0, "availability_memory_s: must be >= 0")
        _check(
            self.availability_memory_s <= self.availability_fresh_s,
            "availability_memory_s: must be <= availability_fresh_s",
        )
        _check(self.mailbox_capacity >= 1, "mailbox_capacity: must be >= 1")
        _check(self.write_retries >= 0, "write_retries: must be >= 0")
        _check(self.max_active_per_customer >= 1, "max_active_per_customer: must be >= 1")
        _check(
            self.idempotency_keep_s >= 24 * 3600,
            "idempotency_keep_s: must be at least 24 h (86400)",
        )


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
        ask_timeout_s=message_timeout_s + settings.answer_margin_s,
    )


def replayer_mailbox(
    settings: BookingSettings,
    runtime: RuntimeSettings,
    *,
    concurrency: int,
    database_call_s: float,
    redis_call_s: float,
) -> MailboxSettings:
    """The BookingReplayer's: a replay makes at most three database calls (the write,
    the lost-slot record, a schedule reload) and three Redis operations, each under its
    own deadline; the message may take all of them, so a slow dependency answers as
    the adapter's timeout (an outage: the job is handed back uncounted), never as the
    mailbox's (a counted failed attempt)."""
    message_timeout_s = 3 * (database_call_s + redis_call_s)
    return dataclasses.replace(
        runtime.mailbox,
        concurrency=concurrency,
        message_timeout_s=message_timeout_s,
        ask_timeout_s=message_timeout_s + settings.answer_margin_s,
    )
