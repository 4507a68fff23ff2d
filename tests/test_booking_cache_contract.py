"""The booking-cache contract (``tests/booking_cache_contract.py``) on both caches:
``RedisBookingCache`` on the real server (its TTLs on real time, a prefix of the
test's own) and ``MemoryBookingCache`` on a clock the test moves (exact, no waiting)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio_asyncio

from adapters import MemoryBookingCache, RedisBookingCache, open_redis
from config import RedisSettings
from tests.booking_cache_contract import BookingCacheContract, CacheFactory, CacheUnderTest


@pytest.fixture(params=["memory", "redis"])
def cache_factory(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> CacheFactory:
    """Opens a fresh cache of each implementation, and a way to let time pass on it."""
    if request.param == "memory":

        @asynccontextmanager
        async def open_memory() -> AsyncIterator[CacheUnderTest]:
            now = [0.0]

            async def wait(seconds: float) -> None:
                await trio.lowlevel.checkpoint()
                now[0] += seconds

            yield CacheUnderTest(MemoryBookingCache(clock=lambda: now[0]), wait)

        return open_memory

    @asynccontextmanager
    async def open_real() -> AsyncIterator[CacheUnderTest]:
        settings = RedisSettings(url=redis_url, prefix=f"{redis_prefix}{trio.current_time()}:")
        async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=1.0) as cache:
            yield CacheUnderTest(RedisBookingCache(cache), trio.sleep)

    return open_real


class TestBookingCacheContract(BookingCacheContract):
    """Every contract test, once per cache."""
