"""The booking actors on their in-memory twins under trio's virtual clock: a Postgres
outage of any length, played out in exact virtual seconds and no real waiting.

The same SlotBooker and BookingReplayer as in production, on ``MemoryBookingStore``,
``MemoryBookingCache`` and ``MemoryJobQueue`` (each passes its Protocol's contract
suite against the real Postgres / Redis implementation).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, time, timedelta

import pytest
import trio
import trio.testing

from actors import (
    LONDON,
    AppointmentType,
    Book,
    BookingReplayer,
    BookingRequest,
    Category,
    Customer,
    RosterSource,
    SlotBooker,
)
from actors._booking_messages import BOOKINGS_QUEUE
from actors._replayer import LOST_WHILE_PENDING
from adapters import Booked, MemoryBookingCache, MemoryBookingStore, ScheduleRows, SlotRef
from config import BookingSettings
from jobs import MemoryJobQueue, RetryLater, RunJob
from supervisors import ConnectionLost
from tests._booking import next_weekday
from tests.booking_store_contract import book, new_booking

SCHEDULE = ScheduleRows(
    showrooms=["leeds"],
    consultants=[("grace-okafor", "Grace Okafor", "leeds", ["KITCHEN", "BEDROOM"])],
    hours=[("grace-okafor", weekday, time(9), time(17)) for weekday in range(7)],
)
SETTINGS = BookingSettings()
# The wall clock the actors see: virtual seconds on from a fixed instant today.
BASE = datetime.now(UTC).replace(microsecond=0)


def wall() -> datetime:
    return BASE + timedelta(seconds=trio.current_time())


class World:
    """The booking domain wired as the tree wires it, on the twins."""

    def __init__(self) -> None:
        self.store = MemoryBookingStore(SCHEDULE, now=wall)
        self.cache = MemoryBookingCache()
        self.jobs = MemoryJobQueue()
        self.roster = RosterSource(lambda: self.store, lambda: self.cache, refresh_s=60)
        self.booker = SlotBooker(
            self.store, self.cache, self.jobs, self.roster, SETTINGS, clock=wall
        )
        self.replayer = BookingReplayer(self.store, self.cache, self.roster, SETTINGS, clock=wall)

    async def replay(self, *, wait_s: float = 0.0) -> str:
        """Lease the replay job (waiting up to ``wait_s``) and run it as the job worker
        does: done, or handed back for ``after_s`` on ``RetryLater`` (not an attempt)."""
        [lease] = await self.jobs.lease(BOOKINGS_QUEUE, worker="sim", limit=1, wait_s=wait_s)
        try:
            status = await self.replayer.handle(RunJob(lease.job))
        except RetryLater as later:
            await self.jobs.release(lease, delay_s=later.after_s)
            raise
        await self.jobs.complete(lease)
        return status


START = datetime.combine(next_weekday(0), time(10), LONDON)


def booking(key: str, email: str = "ada@example.com") -> Book:
    request = BookingRequest(
        kind=AppointmentType.SHOWROOM,
        category=Category.KITCHEN,
        start=START,
        customer=Customer("Ada", email, "+44 7700 900123", "LS1 6HD"),
        showroom_id="leeds",
    )
    return Book(request, key, hashlib.sha256(key.encode()).digest())


async def test_a_booking_accepted_during_an_outage_is_confirmed_when_postgres_is_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Postgres down: 202 PENDING held in the cache; the replay waits out the outage
    (RetryLater every replay_retry_s, no attempt spent), then confirms it once."""
    world = World()
    await world.roster.current()  # loaded before the outage
    world.store.down = True
    reply = await world.booker.handle(booking("k1"))
    body = json.loads(reply.body)
    assert (reply.status, body["status"]) == (202, "PENDING")
    assert await world.cache.pending(body["id"]) is not None
    for _ in range(3):  # an outage of any length: never an attempt spent
        with pytest.raises(RetryLater) as waiting:
            await world.replay(wait_s=SETTINGS.replay_retry_s)
        assert waiting.value.after_s == SETTINGS.replay_retry_s
    world.store.down = False
    handed_back_at = trio.current_time()
    assert await world.replay(wait_s=SETTINGS.replay_retry_s) == "CONFIRMED"
    assert trio.current_time() - handed_back_at == pytest.approx(SETTINGS.replay_retry_s, abs=1e-9)
    confirmed = await world.store.fetch(body["id"])
    assert confirmed is not None
    assert confirmed.status == "CONFIRMED"
    assert [job.kind for job in world.store.outbox] == ["appointment.confirmed"]
    assert await world.cache.pending(body["id"]) is None
    # The customer's retry gets the first answer, not a second booking.
    again = await world.booker.handle(booking("k1"))
    assert json.loads(again.body)["id"] == body["id"]


async def test_an_outage_longer_than_the_hold_loses_the_slot_and_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The hold lasts exactly pending_hold_s: held a second before, free a second
    after; a rival who books the freed slot keeps it, and the replay writes the
    pending booking CANCELLED (slot_taken_while_pending) with a cancellation notice."""
    world = World()
    await world.roster.current()
    world.store.down = True
    reply = await world.booker.handle(booking("k1"))
    booking_id = json.loads(reply.body)["id"]
    slot = SlotRef("grace-okafor", START.astimezone(UTC))
    await trio.sleep(SETTINGS.pending_hold_s - 1)
    assert await world.cache.held([slot]) == [True]
    await trio.sleep(2)
    assert await world.cache.held([slot]) == [False]
    assert await world.cache.pending(booking_id) is None
    world.store.down = False
    rival = new_booking(START.astimezone(UTC), email="rival@example.com")
    assert await book(world.store, rival) == [Booked("grace-okafor")]
    assert await world.replay() == "CANCELLED"
    lost = await world.store.fetch(booking_id)
    assert lost is not None
    assert (lost.status, lost.status_reason) == ("CANCELLED", LOST_WHILE_PENDING)
    kinds = [(job.kind, job.payload.get("reason")) for job in world.store.outbox]
    assert kinds == [
        ("appointment.confirmed", None),  # the rival's
        ("appointment.cancelled", LOST_WHILE_PENDING),
    ]


async def test_with_both_stores_down_a_booking_is_refused_and_nothing_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No Postgres and no cache: 503 (ConnectionLost), no job queued, nothing written."""
    world = World()
    await world.roster.current()
    world.store.down = world.cache.down = True
    with pytest.raises(ConnectionLost):
        await world.booker.handle(booking("k1"))
    assert await world.jobs.lease(BOOKINGS_QUEUE, worker="sim", limit=1, wait_s=0) == []
    world.store.down = False
    assert world.store.outbox == []
