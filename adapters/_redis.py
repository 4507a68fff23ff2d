"""Redis (or Sentinel) through redis.asyncio on trio-asyncio, with short timeouts.

One bridge hop per operation: an operation is an asyncio coroutine function taking
the client (use a pipeline inside it for several commands). Timeouts are short and
redis-py's own retries are off, so a dead Redis costs one short timeout and then the
reconnect gate answers at once; the service is built to run without Redis.

Sentinel: ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
import structlog
import trio
import trio_asyncio
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from adapters._gate import DependencyGate, GateStatistics, describe_outage
from config import RedisSettings
from supervisors import ConnectionLost, DependencyError, LomashError, OperationTimeout

__all__ = ["Cache", "CacheOperation", "RedisCache", "open_redis", "sentinel_parts"]

type Client = aioredis.Redis
type CacheOperation[T] = Callable[[Client], Awaitable[T]]

log = structlog.get_logger("adapters.redis")


class Cache(Protocol):
    def key(self, *parts: str) -> str:
        """A key under this process's prefix."""
        ...

    async def run[T](self, operation: CacheOperation[T], *, waits_s: float = 0.0) -> T:
        """Run ``operation`` (one bridge hop). ``waits_s``: how long it blocks on
        purpose (a blocking read); only the time beyond it counts as latency."""
        ...

    async def ping(self) -> None:
        """Probe Redis now, whatever its gate says (its verdict moves the gate)."""
        ...

    def outage(self) -> str | None:
        """Why the gate refuses calls ("slow (p99 0.50 s, timeouts)", ...), or None."""
        ...

    def statistics(self) -> GateStatistics: ...


def translate(error: BaseException, *, timeout_s: float) -> LomashError:
    """The project's error for a redis-py / OS error (the one translation point)."""
    if isinstance(error, redis.exceptions.TimeoutError) and "connecting" in str(error):
        return ConnectionLost("connection timeout", dependency="redis")  # nobody answered
    if isinstance(error, redis.exceptions.TimeoutError | TimeoutError | asyncio.TimeoutError):
        return OperationTimeout("redis timeout", dependency="redis", timeout_s=timeout_s)
    if isinstance(
        error,
        redis.exceptions.ConnectionError
        | redis.exceptions.BusyLoadingError
        | redis.exceptions.ReadOnlyError
        | OSError,
    ):
        return ConnectionLost(describe_outage(error), dependency="redis")
    return DependencyError(f"{type(error).__name__}: {error}", dependency="redis")


_TRANSLATED = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)


class RedisCache:
    """The client behind a gate: a Redis that refuses, resets or answers slowly is
    refused at once until a probe and one fast trial call answer again."""

    def __init__(self, settings: RedisSettings, client: Client) -> None:
        self._settings = settings
        self._client = client
        self.gate = DependencyGate(
            "redis",
            min_s=settings.reconnect_min_s,
            max_s=settings.reconnect_max_s,
            slow_call_s=settings.slow_call_s,
            slow_calls=settings.slow_calls,
        )

    def key(self, *parts: str) -> str:
        return self._settings.prefix + ":".join(parts)

    @property
    def settings(self) -> RedisSettings:
        return self._settings

    async def run[T](self, operation: CacheOperation[T], *, waits_s: float = 0.0) -> T:
        return await self.gate.call(partial(self._hop, operation), waits_s=waits_s)

    async def ping(self) -> None:
        await self.gate.probe(self._ping, timeout_s=self._settings.timeout_s)

    def outage(self) -> str | None:
        return self.gate.outage()

    async def watch(self) -> None:
        """Probe the gate while it is down (runs as long as the client is open)."""
        await self.gate.watch(self._ping, timeout_s=self._settings.timeout_s)

    def statistics(self) -> GateStatistics:
        return self.gate.statistics()

    async def listen(
        self,
        channel: str,
        *,
        on_message: Callable[[str], None],
        on_subscribed: Callable[[], None],
    ) -> None:
        """Subscribe to ``channel`` and call ``on_message`` with each message's text,
        until cancelled; ``on_subscribed`` once Redis confirmed the subscription.
        Raises ``ConnectionLost`` (or the like) when the connection fails. Outside
        the gate: a subscription waits on purpose, it is no slow call. Each wait for
        a message is bounded by ``operation_timeout_s`` (then it waits again)."""
        poll_s = self._settings.operation_timeout_s

        async def in_asyncio() -> None:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(channel)
                while True:
                    message = await pubsub.get_message(timeout=poll_s)
                    if message is None:
                        continue
                    data = message.get("data")
                    text = data.decode() if isinstance(data, bytes) else str(data)
                    if message.get("type") == "subscribe":
                        on_subscribed()
                    elif message.get("type") == "message":
                        on_message(text)
            except _TRANSLATED as error:
                raise translate(error, timeout_s=self._settings.timeout_s) from error
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

        await trio_asyncio.aio_as_trio(in_asyncio)()

    async def follow(
        self,
        channel: str,
        *,
        on_message: Callable[[str], None],
        on_subscribed: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        """Forever: ``listen`` to ``channel``; ``on_lost`` whenever the subscription
        ends, which is tried again after ``reconnect_min_s``, doubling up to
        ``reconnect_max_s`` while it keeps failing (a confirmed subscription starts
        the doubling afresh)."""
        settings = self._settings
        delay = settings.reconnect_min_s

        def subscribed() -> None:
            nonlocal delay
            delay = settings.reconnect_min_s
            on_subscribed()

        while True:
            try:
                await self.listen(channel, on_message=on_message, on_subscribed=subscribed)
            except LomashError:
                pass
            finally:
                on_lost()
            await trio.sleep(delay)
            delay = min(2 * delay, settings.reconnect_max_s)

    async def _ping(self) -> None:
        await self._hop(_ping)

    async def _hop[T](self, operation: CacheOperation[T]) -> T:
        # The socket timeouts bound every command; this bounds the whole operation
        # (a pipeline, a script), in case the server trickles.
        timeout_s = self._settings.operation_timeout_s
        with trio.move_on_after(timeout_s) as deadline:
            result: T = await trio_asyncio.aio_as_trio(self._in_asyncio)(operation)
            return result
        assert deadline.cancelled_caught
        raise OperationTimeout("redis timeout", dependency="redis", timeout_s=timeout_s)

    async def _in_asyncio[T](self, operation: CacheOperation[T]) -> T:
        try:
            return await operation(self._client)
        except _TRANSLATED as error:
            raise translate(error, timeout_s=self._settings.timeout_s) from error


async def _ping(client: Client) -> None:
    await client.ping()


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """(sentinel addresses, service name, db, password) from a redis+sentinel:// URL."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    addresses = []
    for host in hosts.split(","):
        name, _, port = host.partition(":")
        addresses.append((name, int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"sentinel URL needs a service name: {url!r}")
    db = int(path[1]) if len(path) > 1 else 0
    password = unquote(parts.password) if parts.password else None
    return addresses, path[0], db, password


def _client(settings: RedisSettings) -> Client:
    assert settings.url is not None
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_timeout": settings.timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
    }
    if settings.url.startswith("redis+sentinel://"):
        addresses, service, db, password = sentinel_parts(settings.url)
        sentinel = Sentinel(addresses, password=password, db=db, **options)  # type: ignore[no-untyped-call]
        client: Client = sentinel.master_for(service)
        return client
    return aioredis.Redis.from_url(settings.url, **options)


@asynccontextmanager
async def open_redis(settings: RedisSettings, *, cleanup_s: float) -> AsyncIterator[RedisCache]:
    """A client (lazy: the service starts while Redis is down) closed on exit."""
    client = _client(settings)
    try:
        cache = RedisCache(settings, client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cache.watch)
            yield cache
            nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(cleanup_s, shield=True):
            await trio_asyncio.aio_as_trio(client.aclose)()
