"""``BookingCache`` in memory, on trio's clock: the twin the domain actors run on in
virtual-time simulations. It passes the same contract suite as ``RedisBookingCache``
(tests/booking_cache_contract.py), TTLs included.

``down`` makes every call fail as Redis does when it is unreachable, and its
followers lose their subscription until it is back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import trio

from adapters._booking_cache import (
    AvailabilityCopy,
    AvailabilityDay,
    CacheChanges,
    ChangeFollower,
    LockReply,
    LockRequest,
    SlotRef,
)
from supervisors import ConnectionLost

__all__ = ["MemoryBookingCache"]

type _Key = tuple[Any, ...]


class MemoryBookingCache:
    def __init__(self, *, clock: Callable[[], float] = trio.current_time) -> None:
        self._clock = clock
        self._values: dict[_Key, tuple[str, float]] = {}  # key -> (value, expires at)
        self._followers: list[ChangeFollower] = []
        self._down = False

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, down: bool) -> None:
        self._down = down
        for follower in self._followers:
            if down:
                follower.unfollow()
            else:
                follower.follow()

    # -- a dict with expiry --------------------------------------------------------

    def _get(self, key: _Key) -> str | None:
        self._check()
        found = self._values.get(key)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._values[key]
            return None
        return found[0]

    def _set(self, key: _Key, value: str, ttl_s: float) -> None:
        self._values[key] = (value, self._clock() + ttl_s)

    def _expire(self, key: _Key, ttl_s: float) -> None:
        value = self._get(key)
        if value is not None:
            self._set(key, value, ttl_s)

    def _check(self) -> None:
        if self.down:
            raise ConnectionLost("redis is unreachable", dependency="redis")

    @staticmethod
    def _slot(slot: SlotRef) -> _Key:
        return ("slot", slot.consultant_id, int(slot.start.timestamp()))

    @staticmethod
    def _day(name: str, day: AvailabilityDay) -> _Key:
        return (name, day.kind, day.showroom_id, day.day)

    @staticmethod
    def _generation(day: date) -> _Key:
        return ("avail-gen", day)

    # -- BookingCache ----------------------------------------------------------------

    async def take_locks(self, requests: Sequence[LockRequest], ttl_s: float) -> list[LockReply]:
        await trio.lowlevel.checkpoint()
        self._check()
        replies: list[LockReply] = []
        for r in requests:
            stored = None if r.answer_key is None else self._get(("idem", r.answer_key))
            if stored is not None:
                replies.append(LockReply(replay=stored))
                continue
            got: int | None = None
            free: list[int] = []
            for j, slot in enumerate(r.slots):
                holder = self._get(self._slot(slot))
                if got is None and holder in (None, r.holder):
                    self._set(self._slot(slot), r.holder, ttl_s)
                    got = j
                elif holder is None:
                    free.append(j)
            replies.append(LockReply() if got is None else LockReply(locked=got, free=tuple(free)))
        return replies

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
        await trio.lowlevel.checkpoint()
        if self._get(self._slot(slot)) not in (None, holder):
            return False
        self._set(self._slot(slot), holder, hold_s)
        self._set(("idem", holder), answer, keep_s)
        self._set(("pending", booking_id), json.dumps(record), hold_s)
        return True

    async def pending(self, booking_id: str) -> Mapping[str, Any] | None:
        await trio.lowlevel.checkpoint()
        raw = self._get(("pending", booking_id))
        return None if raw is None else dict(json.loads(raw))

    async def release_pending(self, slot: SlotRef, holder: str, booking_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self._values.pop(("pending", booking_id), None)
        if self._get(self._slot(slot)) == holder:
            del self._values[self._slot(slot)]

    async def apply(self, changes: CacheChanges, *, keep_s: float, bump_ttl_s: float) -> None:
        await trio.lowlevel.checkpoint()
        if not changes:
            return
        self._check()
        for key, answer in changes.answers:
            if self._get(("idem", key)) is None:
                self._set(("idem", key), answer, keep_s)
        for slot, holder in changes.releases:
            if self._get(self._slot(slot)) == holder:
                del self._values[self._slot(slot)]
        for slot in changes.frees:
            self._values.pop(self._slot(slot), None)
        for day in changes.stale:
            self._values.pop(self._day("avail", day), None)
        for bumped in changes.bumps:
            now = int(self._get(self._generation(bumped)) or 0)
            self._set(self._generation(bumped), str(now + 1), bump_ttl_s)
        if changes.bumps:
            for follower in self._followers:
                follower.changed(changes.bumps)

    async def follow_changes(self, follower: ChangeFollower) -> None:
        self._followers.append(follower)
        try:
            if not self._down:
                follower.follow()
            await trio.sleep_forever()
        finally:
            self._followers.remove(follower)
            follower.unfollow()

    async def read_availability(
        self, days: Sequence[AvailabilityDay]
    ) -> tuple[list[str | None], list[str]]:
        await trio.lowlevel.checkpoint()
        fresh = [self._get(self._day("avail", d)) for d in days]
        return fresh, [self._get(self._generation(d.day)) or "0" for d in days]

    async def stale_availability(self, days: Sequence[AvailabilityDay]) -> list[str | None]:
        await trio.lowlevel.checkpoint()
        return [self._get(self._day("avail-stale", d)) for d in days]

    async def keep_availability(self, copies: Sequence[AvailabilityCopy]) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        for c in copies:
            if (self._get(self._generation(c.day.day)) or "0") == c.seen:
                self._set(self._day("avail", c.day), c.text, c.fresh_s)
                self._set(self._day("avail-stale", c.day), c.text, c.stale_s)

    async def held(self, slots: Sequence[SlotRef]) -> list[bool]:
        await trio.lowlevel.checkpoint()
        return [self._get(self._slot(s)) is not None for s in slots]

    async def schedule_copy(self) -> str | None:
        await trio.lowlevel.checkpoint()
        return self._get(("schedule",))

    async def keep_schedule_copy(self, text: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self._values[("schedule",)] = (text, float("inf"))
