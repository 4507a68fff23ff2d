"""The booking domain's fast path (slot locks, pending bookings, cached availability):
its vocabulary and the ``BookingCache`` Protocol.

Two implementations pass one contract suite (tests/booking_cache_contract.py):
``RedisBookingCache`` (adapters/_booking_cache_redis.py: Lua scripts, one round trip
per call) and ``MemoryBookingCache`` (adapters/_booking_cache_memory.py: dicts on
trio's clock, for virtual-time simulations of the domain actors).

The cache is never the truth (Postgres's EXCLUDE constraint is), and the actors treat
every failure of it as "skip the fast path" or "answer from what is known":

- **Slot locks**: a consultant-slot is held by one *holder* (a scoped idempotency key,
  or ``reschedule:{id}``) for ``ttl_s``; a concurrent attempt is refused at once.
- **Stored answers**: the answer given to an idempotency key, kept ``keep_s``; a
  retry gets it before any lock is looked at.
- **Pending bookings** (Postgres down): the lock is extended to ``hold_s`` and the
  booking's record kept beside it, until the replay writes it.
- **Availability** per (type, showroom, local day): a fresh copy, a stale copy served
  while Postgres is down, and a generation per day that every change bumps, so a
  list computed before a change is never cached after it.
- **Changes followed**: every applied change's days are told to the followers of
  every process (``follow_changes``: Redis pub/sub), so a process may hold days in
  memory and forget them when they change (actors/_availability_memory.py).
- **The schedule copy**: the roster's last rows, for a start while Postgres is down.

Names here are the domain's (consultant, start, day); keys are the implementation's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

__all__ = [
    "AvailabilityCopy",
    "AvailabilityDay",
    "BookingCache",
    "CacheChanges",
    "ChangeFollower",
    "LockReply",
    "LockRequest",
    "SlotRef",
]


@dataclass(frozen=True, slots=True)
class SlotRef:
    """One consultant's slot starting at ``start`` (an aware datetime)."""

    consultant_id: str
    start: datetime


@dataclass(frozen=True, slots=True)
class AvailabilityDay:
    """The free slots of one appointment type (and showroom) on one local day."""

    kind: str
    showroom_id: str | None
    day: date


@dataclass(frozen=True, slots=True)
class LockRequest:
    answer_key: str | None  # the idempotency key whose stored answer wins (None: none)
    holder: str  # who holds the lock: the scoped idempotency key
    slots: tuple[SlotRef, ...]  # in the order to try


@dataclass(frozen=True, slots=True)
class LockReply:
    replay: str | None = None  # a stored answer
    locked: int | None = None  # index into ``slots`` of the lock now held
    free: tuple[int, ...] = ()  # the other slots nobody held (still fair game)


@dataclass(frozen=True, slots=True)
class AvailabilityCopy:
    """A computed day to keep: fresh for ``fresh_s``, stale for ``stale_s``, unless
    the day's generation moved from ``seen`` (read before computing)."""

    day: AvailabilityDay
    text: str
    fresh_s: float
    stale_s: float
    seen: str


@dataclass(slots=True)
class CacheChanges:
    """What a booking change does to the cache, applied in one call (``apply``)."""

    answers: list[tuple[str, str]] = field(default_factory=list)  # idempotency key, answer
    releases: list[tuple[SlotRef, str]] = field(default_factory=list)  # slot, our holder
    frees: list[SlotRef] = field(default_factory=list)  # slot locks to drop, whoever holds
    stale: list[AvailabilityDay] = field(default_factory=list)  # fresh copies to drop
    bumps: list[date] = field(default_factory=list)  # days whose generation moves

    def __bool__(self) -> bool:
        return bool(self.answers or self.releases or self.frees or self.stale or self.bumps)


class ChangeFollower(Protocol):
    """Told of every applied change (``follow_changes``)."""

    def changed(self, days: Iterable[date]) -> None:
        """These days' availability changed (in any process)."""
        ...

    def follow(self) -> None:
        """Subscribed: from now on every change is told."""
        ...

    def unfollow(self) -> None:
        """Not subscribed (any more): changes may go untold until ``follow``."""
        ...


class BookingCache(Protocol):
    async def take_locks(self, requests: Sequence[LockRequest], ttl_s: float) -> list[LockReply]:
        """Per request: its stored answer, or the first slot it could lock (a slot it
        already holds counts) and which others nobody holds, or neither."""
        ...

    async def hold_pending(
        self,
        slot: SlotRef,
        holder: str,
        *,
        booking_id: str,
        answer: str,
        record: Mapping[str, Any],
        hold_s: float,
        keep_s: float,
    ) -> bool:
        """Keep ``slot`` for ``hold_s`` for a pending booking, with its answer (under
        ``holder``, kept ``keep_s``) and its record; False if another holds the slot."""
        ...

    async def pending(self, booking_id: str) -> Mapping[str, Any] | None:
        """The record of a pending booking (None: none, or its hold expired)."""
        ...

    async def release_pending(self, slot: SlotRef, holder: str, booking_id: str) -> None:
        """Drop the pending record and our lock; the stored answer stays."""
        ...

    async def apply(self, changes: CacheChanges, *, keep_s: float, bump_ttl_s: float) -> None:
        """Store answers (kept ``keep_s``, first one wins), release our locks, free
        slots, drop fresh copies, bump generations (kept ``bump_ttl_s``)."""
        ...

    async def follow_changes(self, follower: ChangeFollower) -> None:
        """Until cancelled: tell ``follower`` the bumped days of every change applied
        by any process, ``follow`` while subscribed and ``unfollow`` while not (the
        subscription is tried again while it fails)."""
        ...

    async def read_availability(
        self, days: Sequence[AvailabilityDay]
    ) -> tuple[list[str | None], list[str]]:
        """The fresh copies of ``days`` and the generation of each one's date ('0')."""
        ...

    async def stale_availability(self, days: Sequence[AvailabilityDay]) -> list[str | None]: ...

    async def keep_availability(self, copies: Sequence[AvailabilityCopy]) -> None:
        """Keep each copy (fresh and stale) unless its day changed since it was read."""
        ...

    async def held(self, slots: Sequence[SlotRef]) -> list[bool]:
        """Whether each slot's lock is held by anyone."""
        ...

    async def schedule_copy(self) -> str | None: ...

    async def keep_schedule_copy(self, text: str) -> None: ...
