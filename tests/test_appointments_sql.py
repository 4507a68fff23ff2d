"""The appointment operations on real Postgres, where concurrency decides."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio_asyncio

from actors import LONDON, BookingReplayer, RosterSource
from actors._booking_effects import notice
from actors._booking_views import pending_record
from adapters import (
    Booked,
    Cache,
    Database,
    NewBooking,
    PostgresBookingStore,
    RedisBookingCache,
    open_database,
    open_redis,
)
from config import BookingSettings, DatabaseSettings, RedisSettings
from jobs import Job, RetryLater, RunJob
from supervisors import DependencyError
from tests._booking import next_weekday, prepare_database
from tests._caches import BrokenCache
from tests.conftest import fetch

START = datetime.combine(next_weekday(0), datetime.min.time(), LONDON).replace(hour=10)


@asynccontextmanager
async def open_stores(
    database_url: str, redis_url: str, prefix: str
) -> AsyncIterator[tuple[Database, Cache]]:
    """The real Postgres and Redis adapters, opened for one test."""
    async with (
        open_database(DatabaseSettings(url=database_url), application="t", cleanup_s=1.0) as db,
        open_redis(RedisSettings(url=redis_url, prefix=prefix), cleanup_s=1.0) as cache,
    ):
        yield db, cache


def booking(start: datetime = START) -> NewBooking:
    start = start.astimezone(UTC)
    return NewBooking(
        id=str(uuid.uuid4()),
        reference="LW-TEST-0001",
        kind="SHOWROOM",
        category="KITCHEN",
        candidates=("grace-okafor",),
        showroom_id="leeds",
        start=start,
        end=start + timedelta(hours=1),
        customer_name="Ada",
        customer_email="ada@example.com",
        customer_phone="+44 7700 900123",
        customer_postcode="LS1 6HD",
        customer_address=None,
        notes=None,
        token_hash=hashlib.sha256(b"t").digest(),
        idempotency_key=f"appointments:{uuid.uuid4().hex}",
        request_hash=b"h" * 32,
    )


async def test_two_deliveries_of_one_replay_at_once_confirm_it_once(
    fresh_database_url: str,
) -> None:
    """The losers of the race see the winner's row: no false "slot taken", one notice."""
    pending = booking()
    statuses: list[object] = []
    async with trio_asyncio.open_loop():
        await prepare_database(fresh_database_url)
        settings = DatabaseSettings(url=fresh_database_url)
        async with open_database(settings, application="t", cleanup_s=1.0) as db:
            store = PostgresBookingStore(db)
            confirmed = notice("appointment.confirmed", pending.id)

            async def deliver() -> None:
                written = await store.write_replayed(pending, "grace-okafor", 202, "{}", confirmed)
                statuses.append(written)

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(deliver)
        rows = await fetch(fresh_database_url, "SELECT status, status_reason FROM appointments")
        kinds = await fetch(fresh_database_url, "SELECT kind FROM outbox")
    assert (
        sorted(map(str, statuses)) == ["Booked(consultant_id='grace-okafor')"] + ["CONFIRMED"] * 3
    )
    assert [tuple(r) for r in rows] == [("CONFIRMED", None)]
    assert [r[0] for r in kinds] == ["appointment.confirmed"]


async def test_every_reschedule_is_announced_even_back_and_forth(
    fresh_database_url: str,
) -> None:
    """Three reschedules, back to the first slot and on: each writes its own notification."""
    first = booking()
    other = START + timedelta(hours=2)
    async with trio_asyncio.open_loop():
        await prepare_database(fresh_database_url)
        settings = DatabaseSettings(url=fresh_database_url)
        async with open_database(settings, application="t", cleanup_s=1.0) as db:
            store = PostgresBookingStore(db)
            confirmed = notice("appointment.confirmed", first.id)
            assert await store.write_replayed(first, "grace-okafor", 202, "{}", confirmed) == (
                Booked("grace-okafor")
            )
            for start in (other, START, other):
                utc = start.astimezone(UTC)
                # As the booker does it: every move its own notice.
                moved_notice = notice("appointment.rescheduled", first.id, version=uuid.uuid4().hex)
                moved = await store.reschedule(
                    first.id, ["grace-okafor"], utc, utc + timedelta(hours=1), moved_notice
                )
                assert not isinstance(moved, type(None))
        kinds = await fetch(fresh_database_url, "SELECT kind FROM outbox ORDER BY id")
    assert [r[0] for r in kinds] == ["appointment.confirmed"] + ["appointment.rescheduled"] * 3


async def test_a_replay_without_its_hold_is_skipped_unless_the_hold_expired(
    fresh_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The job is queued before the hold: a job whose hold never happened (the caller
    was told 503 or 409) writes nothing; one whose hold outlived pending_hold_s is
    written anyway, so a customer told 202 always hears back."""
    never_held, expired = booking(), booking(START + timedelta(hours=3))
    settings = BookingSettings()
    async with trio_asyncio.open_loop():
        await prepare_database(fresh_database_url)
        async with open_stores(fresh_database_url, redis_url, f"{redis_prefix}replay:") as (
            db,
            cache,
        ):
            store, booking_cache = PostgresBookingStore(db), RedisBookingCache(cache)
            roster = RosterSource(lambda: store, lambda: booking_cache, refresh_s=60)
            replayer = BookingReplayer(store, booking_cache, roster, settings)
            # Just queued, no hold yet: the hold may be on its way; try again later.
            with pytest.raises(RetryLater):
                await replayer.handle(RunJob(_job(never_held, time.time())))
            results = [
                await replayer.handle(RunJob(_job(b, accepted_at)))
                for b, accepted_at in (
                    (never_held, time.time() - 60),
                    (expired, time.time() - settings.pending_hold_s - 60),
                )
            ]
        rows = await fetch(fresh_database_url, "SELECT id::text, status FROM appointments")
    assert results == ["SKIPPED", "CONFIRMED"]
    assert [tuple(r) for r in rows] == [(expired.id, "CONFIRMED")]


def _job(b: NewBooking, accepted_at: float) -> Job:
    payload = {
        **pending_record(b, "grace-okafor"),
        "response_status": 202,
        "response": "{}",
        "accepted_at": accepted_at,
    }
    return Job(
        id=b.id,
        queue="bookings",
        kind="booking.replay",
        payload=payload,
        attempt=1,
        enqueued_at=0.0,
    )


async def test_a_replay_that_hits_a_bug_fails_instead_of_waiting_forever(
    fresh_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """An error that is no outage (a Redis script bug) fails the replay job (an attempt
    counted, then the dead-letter queue), where it was once handed back uncounted as
    RetryLater forever (outages still are: tests/test_booking_failures.py)."""
    settings = BookingSettings()
    async with trio_asyncio.open_loop():
        await prepare_database(fresh_database_url)
        async with open_stores(fresh_database_url, redis_url, f"{redis_prefix}bug:") as (
            db,
            cache,
        ):
            store, broken = PostgresBookingStore(db), RedisBookingCache(BrokenCache(cache))
            roster = RosterSource(lambda: store, lambda: RedisBookingCache(cache), refresh_s=60)
            replayer = BookingReplayer(store, broken, roster, settings)
            with pytest.raises(DependencyError):
                await replayer.handle(RunJob(_job(booking(), time.time())))
