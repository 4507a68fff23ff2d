"""Free slots held in memory, so a warm availability read asks neither Redis nor
Postgres (``LOMASH_BOOKING_AVAILABILITY_MEMORY_S``).

The catalogue's availability keeps here every day it read from the Redis copy or
computed from Postgres. The memory is trusted only while ``following``: subscribed to
the channel every applied booking change publishes its days on, whatever process
applied it (adapters/_booking_cache_redis.py). So:

- a day heard changing is forgotten at once, and so is a day this process changes
  (when the change is applied: read-your-writes in the process that booked);
- a day is kept at most ``memory_s``: a change whose publication was lost (Redis
  failed between the booking's write and its cache changes) is forgotten by then,
  the same bound the Redis copy has for such a change (``availability_fresh_s``);
- a list read or computed before a change of its day is not kept after it: ``mark``
  before reading, ``keep`` refuses what an older mark read;
- when the subscription is lost nothing is trusted until it is back, and then
  everything kept before is forgotten (changes may have been missed meanwhile).

Bounded: days are keyed by (type, a showroom that exists, a day within the horizon);
at most ``capacity`` are kept, and a full memory first drops what has expired.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import trio

from actors._calendar import Slot
from adapters import AvailabilityDay

__all__ = ["AvailabilityMemory"]

# Days heard changing whose count is kept (to refuse lists read before the change);
# past this many, everything is forgotten at once and the counts start afresh.
_MOST_CHANGED_DAYS = 4096


class AvailabilityMemory:
    def __init__(self, memory_s: float, capacity: int = 10_000) -> None:
        self.memory_s = memory_s
        self.capacity = capacity
        self.following = False
        self._days: dict[date, dict[AvailabilityDay, tuple[float, tuple[Slot, ...]]]] = {}
        self._size = 0
        # Every forgetting counts: a day's count is the count when it last changed, and
        # ``_cleared`` the count when everything was last forgotten.
        self._count = 0
        self._changed: dict[date, int] = {}
        self._cleared = 0

    def get(self, day: AvailabilityDay) -> tuple[Slot, ...] | None:
        """The day's free slots, if kept within ``memory_s`` and not heard changing."""
        if not self.following:
            return None
        kept = self._days.get(day.day)
        entry = kept.get(day) if kept is not None else None
        if entry is None or trio.current_time() - entry[0] >= self.memory_s:
            return None
        return entry[1]

    def mark(self) -> int:
        """Taken before reading a day: ``keep`` refuses it if the day changed since."""
        return self._count

    def keep(self, day: AvailabilityDay, slots: tuple[Slot, ...], mark: int) -> None:
        if not self.following or self.memory_s <= 0:
            return
        if mark < self._cleared or self._changed.get(day.day, -1) > mark:
            return  # read before a change (or a clearing): the change may be missing
        if self._size >= self.capacity:
            self._drop_expired()
            if self._size >= self.capacity:
                self._clear()
        kept = self._days.setdefault(day.day, {})
        if day not in kept:
            self._size += 1
        kept[day] = (trio.current_time(), slots)

    def changed(self, days: Iterable[date]) -> None:
        """These days changed (a booking, a cancellation, a hold): forget them, and
        refuse what was read of them before now."""
        for day in days:
            self._count += 1
            self._changed[day] = self._count
            dropped = self._days.pop(day, None)
            if dropped is not None:
                self._size -= len(dropped)
        if len(self._changed) > _MOST_CHANGED_DAYS:
            self._clear()

    def follow(self) -> None:
        """Subscribed (again): trust from now on, nothing kept before."""
        self._clear()
        self.following = True

    def unfollow(self) -> None:
        self.following = False
        self._clear()

    def _clear(self) -> None:
        self._count += 1
        self._cleared = self._count
        self._changed.clear()
        self._days.clear()
        self._size = 0

    def _drop_expired(self) -> None:
        oldest = trio.current_time() - self.memory_s
        for day in list(self._days):
            kept = self._days[day]
            for key in [k for k, (at, _) in kept.items() if at <= oldest]:
                del kept[key]
                self._size -= 1
            if not kept:
                del self._days[day]
