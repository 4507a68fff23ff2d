"""Availability's reads of Postgres are shared: many callers asking for the same
uncached days at once cost one query (a cold or just-expired week asked by fifty
clients must not queue fifty queries on the pool and answer the rest 503)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import trio
import trio.testing

from actors import Availability, FindSlots, RosterSource
from actors._calendar import AppointmentType
from adapters import MemoryBookingCache, MemoryBookingStore, ScheduleRows
from config import BookingSettings
from supervisors import ConnectionLost

SCHEDULE = ScheduleRows(
    showrooms=["leeds"],
    consultants=[("grace-okafor", "Grace Okafor", "leeds", ["KITCHEN", "BEDROOM"])],
    hours=[("grace-okafor", weekday, time(9), time(17)) for weekday in range(7)],
)
BASE = datetime.now(UTC).replace(microsecond=0)


def wall() -> datetime:
    return BASE + timedelta(seconds=trio.current_time())


class SlowStore(MemoryBookingStore):
    """The twin, counting ``booked_between`` calls, each taking 0.2 s (or failing)."""

    def __init__(self) -> None:
        super().__init__(SCHEDULE, now=wall)
        self.reads = 0
        self.failing = False

    async def booked_between(self, first: datetime, last: datetime) -> set[tuple[str, datetime]]:
        self.reads += 1
        await trio.sleep(0.2)
        if self.failing:
            raise ConnectionLost("postgres is down", dependency="postgres")
        return await super().booked_between(first, last)


def _week() -> FindSlots:
    first = (BASE + timedelta(days=7)).date()
    return FindSlots(AppointmentType.SHOWROOM, "leeds", None, first, first + timedelta(days=6))


async def _ask_at_once(availability: Availability, n: int) -> list[int]:
    counts: list[int] = []

    async def one() -> None:
        counts.append(len(await availability.find(_week())))

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return counts


@pytest.fixture
def world() -> tuple[SlowStore, MemoryBookingCache, Availability]:
    store = SlowStore()
    cache = MemoryBookingCache()
    roster = RosterSource(lambda: store, lambda: cache, refresh_s=60)
    return store, cache, Availability(store, cache, roster, BookingSettings(), clock=wall)


async def test_fifty_callers_of_an_uncached_week_make_one_read(
    autojump_clock: trio.testing.MockClock,
    world: tuple[SlowStore, MemoryBookingCache, Availability],
) -> None:
    store, _, availability = world
    counts = await _ask_at_once(availability, 50)
    assert store.reads == 1
    assert len(set(counts)) == 1  # every caller got the same week
    assert counts[0] == 7 * 8  # 09:00-17:00, hourly, every day
    await _ask_at_once(availability, 50)
    assert store.reads == 1  # now cached: no read at all


async def test_a_failed_shared_read_fails_every_caller_alike(
    autojump_clock: trio.testing.MockClock,
    world: tuple[SlowStore, MemoryBookingCache, Availability],
) -> None:
    """The read fails (Postgres down): each caller gets the outage path (no copy to
    fall back on: the outage itself), after one read, not fifty."""
    store, _, availability = world
    store.failing = True
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await availability.find(_week())
            outcomes.append("answered")
        except ConnectionLost:
            outcomes.append("outage")

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert store.reads == 1
    assert outcomes == ["outage"] * 20
