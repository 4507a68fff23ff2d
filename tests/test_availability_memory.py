"""Availability from memory (actors/_availability_memory.py): a warm week asks
neither the cache nor the store for ``availability_memory_s``; a change applied by
anyone forgets its day at once; a list read before a change is not kept after it; a
lost subscription keeps nothing. On trio's virtual clock, with the booking domain's
twins (the memory cache's followers hear every change as Redis's subscribers do)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import trio
import trio.testing

from actors import Availability, AvailabilityMemory, FindSlots, RosterSource
from actors._calendar import LONDON, AppointmentType, Slot
from adapters import (
    AvailabilityDay,
    CacheChanges,
    MemoryBookingCache,
    MemoryBookingStore,
)
from config import BookingSettings
from tests.test_availability_reads import BASE, SCHEDULE, wall

MEMORY_S = 5.0
FIRST = (BASE + timedelta(days=7)).astimezone(LONDON).date()
WEEK = FindSlots(AppointmentType.SHOWROOM, "leeds", None, FIRST, FIRST + timedelta(days=6))


class Store(MemoryBookingStore):
    """The twin, counting ``booked_between`` calls; ``taken`` slots count as booked,
    and a read may be held at ``gate`` (to change things while it is in flight)."""

    def __init__(self) -> None:
        super().__init__(SCHEDULE, now=wall)
        self.reads = 0
        self.taken: set[tuple[str, datetime]] = set()
        self.gate: trio.Event | None = None

    async def booked_between(self, first: datetime, last: datetime) -> set[tuple[str, datetime]]:
        self.reads += 1
        booked = await super().booked_between(first, last) | self.taken
        if self.gate is not None:
            await self.gate.wait()
        return booked


class Cache(MemoryBookingCache):
    """The twin, counting ``read_availability`` calls."""

    reads = 0

    async def read_availability(
        self, days: Sequence[AvailabilityDay]
    ) -> tuple[list[str | None], list[str]]:
        self.reads += 1
        return await super().read_availability(days)


@dataclass
class World:
    store: Store
    cache: Cache
    memory: AvailabilityMemory
    availability: Availability

    async def week(self) -> list[Slot]:
        return await self.availability.find(WEEK)

    async def change(self, day: date) -> None:
        """What a booking of ``day`` applies (availability_changed's shape)."""
        changes = CacheChanges(
            stale=[AvailabilityDay(AppointmentType.SHOWROOM, "leeds", day)], bumps=[day]
        )
        await self.cache.apply(changes, keep_s=60, bump_ttl_s=60)


@asynccontextmanager
async def world(memory_s: float = MEMORY_S) -> AsyncIterator[World]:
    store, cache = Store(), Cache()
    memory = AvailabilityMemory(memory_s)
    roster = RosterSource(lambda: store, lambda: cache, refresh_s=3600)
    availability = Availability(store, cache, roster, BookingSettings(), memory=memory, clock=wall)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.follow_changes, memory)
        await trio.testing.wait_all_tasks_blocked()
        yield World(store, cache, memory, availability)
        nursery.cancel_scope.cancel()


def _nine_on(day: date) -> datetime:
    return datetime.combine(day, time(9), tzinfo=LONDON).astimezone(UTC)


async def test_a_warm_week_asks_neither_cache_nor_store_for_memory_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with world() as w:
        first = await w.week()
        cold = (w.cache.reads, w.store.reads)
        await trio.sleep(MEMORY_S - 0.001)
        warm = [await w.week() for _ in range(20)]
        during = (w.cache.reads, w.store.reads)
        await trio.sleep(0.001)  # kept MEMORY_S ago: ask again (the Redis copy answers)
        again = await w.week()
        after = (w.cache.reads, w.store.reads)
    assert len(first) == 7 * 8
    assert cold == (1, 1)
    assert all(slots == first for slots in warm)
    assert during == (1, 1)
    assert again == first
    assert after == (2, 1)


async def test_a_change_of_a_day_forgets_that_day_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A booking of the week's third day, applied (by any process): the next read
    shows it, though the memory kept the week a moment ago. A change of a day outside
    the week costs the week nothing."""
    third = FIRST + timedelta(days=2)
    booked = ("grace-okafor", _nine_on(third))
    async with world() as w:
        before = await w.week()
        await w.change(FIRST + timedelta(days=30))
        unchanged = await w.week()
        reads = (w.cache.reads, w.store.reads)
        w.store.taken.add(booked)
        await w.change(third)
        after = await w.week()
        reread = (w.cache.reads, w.store.reads)
    assert Slot(booked[1], booked[0], "leeds") in before
    assert unchanged == before
    assert reads == (1, 1)
    assert Slot(booked[1], booked[0], "leeds") not in after
    assert len(after) == len(before) - 1
    assert reread == (2, 2)  # the changed day's copy was dropped: computed again


async def test_a_week_read_before_a_change_is_not_kept_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A read in flight when its day changes answers what it read, but keeps it
    neither in memory nor in the cache: the next read computes the day again."""
    day = FIRST
    booked = ("grace-okafor", _nine_on(day))
    async with world() as w, trio.open_nursery() as nursery:
        w.store.gate = trio.Event()
        answers: list[list[Slot]] = []

        async def read() -> None:
            answers.append(await w.week())

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()  # the read waits in the store
        w.store.taken.add(booked)
        await w.change(day)
        w.store.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        w.store.gate = None
        after = await w.week()
    assert Slot(booked[1], booked[0], "leeds") in answers[0]  # read before the booking
    assert Slot(booked[1], booked[0], "leeds") not in after
    assert w.store.reads == 2


async def test_a_lost_subscription_keeps_nothing_and_starts_afresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The cache goes down (the subscription with it): nothing is trusted, so a
    change missed meanwhile is never served from memory; back up, the memory starts
    empty and fills again."""
    async with world() as w:
        await w.week()
        w.cache.down = True
        following_while_down = w.memory.following
        w.cache.down = False
        await w.week()
        after = (w.cache.reads, w.store.reads, w.memory.following)
        await w.week()
        warm = (w.cache.reads, w.store.reads)
    assert not following_while_down
    assert after == (2, 1, True)  # asked the cache again: the memory had forgotten
    assert warm == (2, 1)


async def test_no_memory_when_its_bound_is_zero(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with world(memory_s=0.0) as w:
        for _ in range(3):
            await w.week()
    assert (w.cache.reads, w.store.reads) == (3, 1)


def test_the_memory_is_bounded_and_drops_the_expired_first() -> None:
    async def main() -> tuple[list[bool], list[bool]]:
        memory = AvailabilityMemory(MEMORY_S, capacity=3)
        memory.follow()
        days = [AvailabilityDay("ONLINE", None, FIRST + timedelta(days=n)) for n in range(5)]
        mark = memory.mark()
        memory.keep(days[0], (), mark)
        await trio.sleep(MEMORY_S)
        for day in days[1:4]:  # the fourth finds the memory full: the expired one goes
            memory.keep(day, (), mark)
        kept = [memory.get(d) is not None for d in days]
        memory.keep(days[4], (), mark)  # full of live days: everything goes
        return kept, [memory.get(d) is not None for d in days]

    kept, after = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert kept == [False, True, True, True, False]
    assert after == [False, False, False, False, True]
