"""The Redis adapter on the real server: prefixed keys, fast failure, recovery, Sentinel."""

from __future__ import annotations

import pytest
import trio
import trio_asyncio

from adapters import RedisCache, open_redis
from adapters._redis import Client, sentinel_parts
from chaos import open_proxy
from config import RedisSettings
from supervisors import ConnectionLost, OperationTimeout
from tests.conftest import NO_REDIS_URL, REDIS_PORT

BOUND_S = 10.0


def settings(url: str, prefix: str) -> RedisSettings:
    return RedisSettings(url=url, prefix=prefix, reconnect_min_s=0.05, reconnect_max_s=0.4)


async def set_and_get(cache: RedisCache) -> bytes | None:
    key = cache.key("probe", "1")

    async def operation(client: Client) -> bytes | None:
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(key, b"value", ex=60)
            pipe.get(key)
            _, value = await pipe.execute()
        return value  # type: ignore[no-any-return]

    return await cache.run(operation)


async def test_operations_use_the_run_prefix(redis_url: str, redis_prefix: str) -> None:
    """Keys live under this run's prefix; a pipeline is one operation."""
    async with (
        trio_asyncio.open_loop(),
        open_redis(settings(redis_url, redis_prefix), cleanup_s=1.0) as cache,
    ):
        with trio.fail_after(BOUND_S):
            assert cache.key("a", "b") == f"{redis_prefix}a:b"
            assert await set_and_get(cache) == b"value"
            await cache.ping()


async def test_a_dead_redis_is_detected_fast_and_then_refused_without_trying(
    redis_prefix: str,
) -> None:
    """Nothing listening: ConnectionLost at once, then gate refusals with retry_after."""
    url = NO_REDIS_URL
    async with (
        trio_asyncio.open_loop(),
        open_redis(settings(url, redis_prefix), cleanup_s=1.0) as cache,
    ):
        with trio.fail_after(BOUND_S):
            with pytest.raises(ConnectionLost, match="connection refused"):
                await cache.ping()
            with pytest.raises(ConnectionLost) as refused:
                await set_and_get(cache)
            assert refused.value.retry_after is not None
            assert not cache.statistics().up


async def test_a_silent_redis_costs_slow_calls_short_timeouts_then_is_refused_at_once(
    redis_url: str, redis_prefix: str
) -> None:
    """A blackholed Redis: ``slow_calls`` short timeouts in a row, never a hang, then
    every call is refused at once without reaching it, the gate saying why."""
    async with trio_asyncio.open_loop(), open_proxy(REDIS_PORT) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        config = settings(url, redis_prefix)
        async with open_redis(config, cleanup_s=1.0) as cache:
            assert await set_and_get(cache) == b"value"
            proxy.freeze()
            with trio.fail_after(BOUND_S):
                for _ in range(config.slow_calls):
                    with pytest.raises(OperationTimeout):
                        await set_and_get(cache)
                sent = proxy.bytes_up
                with pytest.raises(ConnectionLost, match="slow") as refused:
                    await set_and_get(cache)
            assert proxy.bytes_up == sent  # refused without trying
            assert refused.value.retry_after is not None
            stats = cache.statistics()
            assert (stats.up, stats.outages, stats.refused) == (False, 1, 1)
            reason = cache.outage()
            assert reason is not None
            assert reason.startswith("slow (p99 0.5")


async def test_redis_coming_back_is_used_again(redis_url: str, redis_prefix: str) -> None:
    """After an outage the next due probe succeeds and the gate reopens."""
    async with trio_asyncio.open_loop(), open_proxy(REDIS_PORT) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        async with open_redis(settings(url, redis_prefix), cleanup_s=1.0) as cache:
            with trio.fail_after(BOUND_S):
                assert await set_and_get(cache) == b"value"
                proxy.reset()
                with pytest.raises(ConnectionLost):
                    await set_and_get(cache)
                proxy.forward()
                while True:
                    try:
                        assert await set_and_get(cache) == b"value"
                        break
                    except ConnectionLost as lost:
                        await trio.sleep(lost.retry_after or 0.05)
                assert cache.statistics().up
                assert cache.statistics().outages == 1


def test_sentinel_urls_name_the_sentinels_the_service_and_the_db() -> None:
    """redis+sentinel://:pw@h1:26379,h2/main/2 -> sentinels, service, db, password."""
    addresses, service, db, password = sentinel_parts("redis+sentinel://:s3cret@h1:26379,h2/main/2")
    assert addresses == [("h1", 26379), ("h2", 26379)]
    assert (service, db, password) == ("main", 2, "s3cret")
    with pytest.raises(ValueError, match="service name"):
        sentinel_parts("redis+sentinel://h1:26379")
