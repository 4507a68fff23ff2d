"""The booking bench's data: the seeded showroom and consultants, the slot numbers
each run books, and emptying the booking tables (and our Redis keys) between runs.

Slot g is consultant bench-c{g % CONSULTANTS} at ``Slots.base`` plus g // CONSULTANTS
hours (UTC), as in bench/booking.lua and bench/booking.pgbench.sql.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import asyncpg
import redis

from adapters import staffed_showroom_sql
from bench.http import REDIS_URL

CONSULTANTS = 100  # ids bench-c00 .. bench-c99
CONTENDED_SLOTS = 4
# Ours refuses bookings further ahead than BookingSettings.horizon_days (180).
HORIZON = timedelta(days=175)
# Answers still in flight when wrk stops are committed afterwards: wait for the row
# count to settle, this long at most.
SETTLE_S = 3.0

# The order the booking transaction takes its locks in: a TRUNCATE meeting a late
# transaction then waits for it instead of deadlocking with it.
_RESET = """
SET lock_timeout = '10s';
TRUNCATE idempotency_keys, appointments, outbox;
CHECKPOINT;
"""
_COUNT = "SELECT (SELECT count(*) FROM appointments), (SELECT count(*) FROM idempotency_keys)"


class Slots:
    """Hands out slot numbers: slot g is consultant g % CONSULTANTS at ``base`` plus
    g // CONSULTANTS hours. Each run takes the numbers after the previous run's."""

    def __init__(self, now: datetime) -> None:
        first = (now + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
        self.base = int(first.timestamp())
        hours = int((now + HORIZON - first).total_seconds()) // 3600
        self.total = hours * CONSULTANTS
        self.next = 0

    @property
    def left(self) -> int:
        return self.total - self.next

    def advance(self, used: int) -> None:
        # The next run starts on a fresh hour: no slot of it shares an hour with this one.
        hours = -(-used // CONSULTANTS)
        self.next += hours * CONSULTANTS


# One showroom; consultants bench-c00.. working 00:00-00:00 (until midnight: all 24
# hours bookable) every day of the week.
_SEED = staffed_showroom_sql("bench-sr", consultants=CONSULTANTS, prefix="bench-c")


async def seed(url: str) -> None:
    await _execute(url, _SEED)


async def _execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _settled_counts(url: str) -> tuple[int, int]:
    connection = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + SETTLE_S
        previous = None
        while True:
            row = await connection.fetchrow(_COUNT)
            assert row is not None
            counts = (int(row[0]), int(row[1]))
            if counts == previous or time.monotonic() > deadline:
                return counts
            previous = counts
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


def settled_counts(url: str) -> tuple[int, int]:
    """(appointments, idempotency keys) once two reads a moment apart agree."""
    return asyncio.run(_settled_counts(url))


def reset(url: str) -> None:
    """Empty the booking tables once the answers still in flight have committed."""
    settled_counts(url)
    asyncio.run(_execute(url, _RESET))


def delete_redis_keys(prefix: str) -> None:
    with redis.Redis.from_url(REDIS_URL) as client, client.pipeline(transaction=False) as pipe:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            pipe.unlink(key)
        pipe.execute()
