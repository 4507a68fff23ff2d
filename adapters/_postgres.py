"""PostgreSQL through asyncpg on trio-asyncio: pools, reconnect gate, replica, errors.

One bridge hop per repository operation: an *operation* is an asyncio coroutine
function taking an ``asyncpg`` connection; ``Database.run`` crosses into asyncio once,
acquires a connection, runs the whole operation (any number of queries, a
transaction) and comes back. asyncpg exceptions are translated here, on the asyncio
side, into the project's error tree; nothing from asyncpg leaks past ``adapters/``.

Requires ``trio_asyncio.open_loop()`` as the outermost context of the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
import trio
import trio_asyncio
from asyncpg.pool import PoolConnectionProxy

from adapters._gate import DependencyGate, GateStatistics, describe_outage
from adapters._postgres_errors import TRANSLATED_ERRORS, keep_orphans_quiet, translate
from config import DatabaseSettings
from supervisors import (
    ConnectionLost,
    OperationTimeout,
)

__all__ = [
    "TRANSLATED_ERRORS",
    "Connection",
    "Database",
    "DatabaseStatistics",
    "Operation",
    "PostgresDatabase",
    "Saturated",
    "open_database",
    "translate",
]

type Connection = PoolConnectionProxy[Any]
type Operation[T] = Callable[[Connection], Awaitable[T]]

log = structlog.get_logger("adapters.postgres")


class Database(Protocol):
    async def run[T](
        self, operation: Operation[T], *, readonly: bool = False, idempotent: bool = False
    ) -> T:
        """Run ``operation`` on one connection, in one bridge hop.

        ``readonly``: may go to the replica while the primary is down. ``readonly`` or
        ``idempotent``: may run a second time on a fresh connection when the first one
        turns out dead (as pooled connections are right after an outage)."""
        ...

    async def ping(self) -> None:
        """Probe the primary now, whatever its gate says (its verdict moves the gate)."""
        ...

    def outage(self) -> str | None:
        """Why the primary's gate refuses calls ("slow (p99 2.01 s)", ...), or None."""
        ...

    def statistics(self) -> DatabaseStatistics: ...


@dataclass(frozen=True, slots=True)
class DatabaseStatistics:
    primary: GateStatistics
    replica: GateStatistics | None
    replica_reads: int
    saturated: int  # calls refused by a full bulkhead
    in_flight: int  # calls holding a place in the primary's bulkhead (a connection each)
    waiting: int  # calls waiting for one


class PostgresDatabase:
    """The primary pool, an optional replica pool, and a gate and a bulkhead for each.

    Every call runs under ``call_timeout_s``; past it (or when its caller is
    cancelled) the asyncio side is abandoned, not awaited: asyncpg cancels the query
    and rolls the transaction back in the background while the caller has its
    answer. Until that cleanup ends the call keeps its place in the bulkhead, so the
    bulkhead is the pool's real occupancy and nobody waits for a pool connection.
    """

    def __init__(
        self,
        settings: DatabaseSettings,
        primary: asyncpg.Pool[Any],
        replica: asyncpg.Pool[Any] | None,
    ) -> None:
        self._settings = settings
        self._primary = _Target(settings, primary, "postgres")
        self._replica = _Target(settings, replica, "postgres-replica") if replica else None
        self._replica_reads = 0
        # Abandoned asyncio tasks, referenced until they end (asyncio keeps weak ones).
        self._abandoned: set[asyncio.Future[Any]] = set()

    async def run[T](
        self, operation: Operation[T], *, readonly: bool = False, idempotent: bool = False
    ) -> T:
        try:
            return await self._call(self._primary, operation, retry_stale=readonly or idempotent)
        except ConnectionLost:
            if readonly and self._replica is not None:
                self._replica_reads += 1
                return await self._call(self._replica, operation, retry_stale=True)
            raise

    async def ping(self) -> None:
        await self._primary.gate.probe(
            partial(self._ping, self._primary), timeout_s=self._settings.call_timeout_s
        )

    def outage(self) -> str | None:
        return self._primary.gate.outage()

    async def watch(self) -> None:
        """Probe each gate while it is down (runs as long as the pools are open)."""
        timeout_s = self._settings.call_timeout_s
        async with trio.open_nursery() as nursery:
            for target in (self._primary, self._replica):
                if target is not None:
                    nursery.start_soon(
                        partial(target.gate.watch, partial(self._ping, target), timeout_s=timeout_s)
                    )

    def statistics(self) -> DatabaseStatistics:
        return DatabaseStatistics(
            primary=self._primary.gate.statistics(),
            replica=self._replica.gate.statistics() if self._replica is not None else None,
            replica_reads=self._replica_reads,
            saturated=self._primary.saturated + (self._replica.saturated if self._replica else 0),
            in_flight=self._primary.limiter.borrowed_tokens,
            waiting=self._primary.waiting,
        )

    async def _ping(self, target: _Target) -> None:
        await self._hop(target, _select_one, retry_stale=True)

    async def _call[T](self, target: _Target, operation: Operation[T], *, retry_stale: bool) -> T:
        # A full bulkhead is our queue, not Postgres: no verdict on the gate.
        return await target.gate.call(
            partial(self._hop, target, operation, retry_stale=retry_stale),
            no_verdict=(Saturated,),
        )

    async def _hop[T](self, target: _Target, operation: Operation[T], *, retry_stale: bool) -> T:
        """One bridge hop inside the bulkhead, abandoned (not awaited) past its deadline."""
        token = await target.enter()
        handed_over = False

        def hand_over() -> None:
            nonlocal handed_over
            handed_over = True

        try:
            result: T = await trio_asyncio.aio_as_trio(self._in_asyncio)(
                target, operation, retry_stale, token, hand_over
            )
        finally:
            if not handed_over:  # cancelled before the asyncio side started
                target.limiter.release_on_behalf_of(token)
        return result

    async def _in_asyncio[T](
        self,
        target: _Target,
        operation: Operation[T],
        retry_stale: bool,
        token: object,
        hand_over: Callable[[], None],
    ) -> T:
        """The asyncio side: the attempts run as their own task, waited for until the
        deadline; a caller cancelled or timed out leaves it to clean up behind it."""
        hand_over()
        task = asyncio.ensure_future(self._attempts(target, operation, retry_stale))

        def ended(done: asyncio.Future[T]) -> None:
            target.limiter.release_on_behalf_of(token)
            self._abandoned.discard(done)
            if not done.cancelled():
                done.exception()  # retrieved: an abandoned failure is not logged as lost

        task.add_done_callback(ended)
        timeout_s = self._settings.call_timeout_s
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise OperationTimeout(
                f"{target.name} did not answer within {timeout_s:g} s",
                dependency=target.name,
                timeout_s=timeout_s,
            )
        return task.result()

    def _abandon(self, task: asyncio.Future[Any]) -> None:
        if not task.done():
            self._abandoned.add(task)
            task.cancel()

    async def _attempts[T](self, target: _Target, operation: Operation[T], retry_stale: bool) -> T:
        """Acquire, run, translate (on the asyncio side)."""
        attempts = 2 if retry_stale else 1
        for attempt in range(attempts):
            try:
                async with target.pool.acquire(
                    timeout=self._settings.connect_timeout_s
                ) as connection:
                    return await operation(connection)
            except TRANSLATED_ERRORS as error:
                translated = translate(
                    error,
                    target=target.name,
                    statement_timeout_s=self._settings.statement_timeout_s,
                )
                # A pooled connection may have died with a restarted server: a read
                # may try once more on a fresh connection before calling it an outage.
                if isinstance(translated, ConnectionLost) and attempt + 1 < attempts:
                    continue
                raise translated from error
        raise AssertionError("unreachable")  # pragma: no cover


class Saturated(ConnectionLost):
    """Every connection is busy and the bulkhead's queue is full (or waited out)."""


class _Target:
    """One pool with its gate and its bulkhead."""

    def __init__(self, settings: DatabaseSettings, pool: asyncpg.Pool[Any], name: str) -> None:
        self.name = name
        self.pool = pool
        self.gate = DependencyGate(
            name,
            min_s=settings.reconnect_min_s,
            max_s=settings.reconnect_max_s,
            slow_call_s=settings.slow_call_s,
            slow_calls=settings.slow_calls,
        )
        self.limiter = trio.CapacityLimiter(settings.pool_max_size)
        self.saturated = 0
        self._max_waiting = settings.max_waiting
        self._wait_s = settings.pool_wait_s
        self.waiting = 0

    async def enter(self) -> object:
        """A place in the bulkhead (released by whoever ends the call), or ``Saturated``."""
        token = object()
        try:
            self.limiter.acquire_on_behalf_of_nowait(token)
            return token
        except trio.WouldBlock:
            pass
        if self.waiting >= self._max_waiting:
            raise self._saturated()
        self.waiting += 1
        try:
            with trio.move_on_after(self._wait_s):
                await self.limiter.acquire_on_behalf_of(token)
                return token
        finally:
            self.waiting -= 1
        raise self._saturated()

    def _saturated(self) -> Saturated:
        self.saturated += 1
        return Saturated(
            f"{self.name} is saturated ({self.limiter.total_tokens:g} calls in flight,"
            f" {self.waiting} waiting)",
            dependency=self.name,
            retry_after=self._wait_s,
        )


async def _select_one(connection: Connection) -> None:
    await connection.fetchval("SELECT 1")


class NoWritableHost(ConnectionError):
    """Every host of the URL answered, none as ``target_session_attrs`` asks (all
    standbys, as in the middle of a switchover): an outage of the primary."""


def _host_urls(url: str) -> list[str]:
    """One single-host URL per host of a multi-host URL
    (``postgresql://u@h1:p1,h2:p2/db?...``), in order; ``[url]`` for any other."""
    parts = urlsplit(url)
    user, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return [url]
    return [urlunsplit(parts._replace(netloc=f"{user}{at}{host}")) for host in hosts.split(",")]


class _Hosts:
    """asyncpg's ``connect`` for a pool whose URL names several hosts (a primary and
    its standbys, with ``target_session_attrs``).

    asyncpg tries the hosts in order under one timeout: a host that does not answer
    at all (a vanished machine, a blackholed address) takes the whole of it, so the
    promoted standby behind it is never reached. Here each host has its share of the
    timeout, and the host that last took a connection is tried first (after a
    failover the new primary answers at once; the dead one is tried only if it fails).
    """

    def __init__(self, url: str) -> None:
        self.urls = _host_urls(url)
        self.preferred = 0

    # asyncpg's connect signature: ``timeout`` is what the pool hands us.
    async def connect(self, dsn: str, *, timeout: float, **options: Any) -> Any:  # noqa: ASYNC109
        del dsn  # the same URL as ours: the pool passes it back
        share = timeout / len(self.urls)
        errors: list[BaseException] = []
        for n in range(len(self.urls)):
            index = (self.preferred + n) % len(self.urls)
            try:
                connection = await asyncpg.connect(self.urls[index], timeout=share, **options)
            except asyncpg.TargetServerAttributeNotMatched as error:  # a standby
                errors.append(error)
                continue
            except (TimeoutError, OSError, asyncpg.CannotConnectNowError) as error:
                errors.append(error)  # not there, or starting / shutting down
                continue
            self.preferred = index
            return connection
        unreachable = [e for e in errors if not isinstance(e, asyncpg.InternalClientError)]
        if unreachable:
            raise unreachable[-1]
        raise NoWritableHost(f"no host takes writes ({len(errors)} answered as standbys)")


async def _create_pool(settings: DatabaseSettings, url: str, application: str) -> asyncpg.Pool[Any]:
    """A pool; if the server is down now, a lazy one (min 0) that connects on demand."""
    server_settings = {
        "application_name": application,
        "statement_timeout": str(int(settings.statement_timeout_s * 1000)),
    }
    hosts = _Hosts(url)
    # (asyncpg's own connect for one host; the stubs' protocol for ``connect`` lists
    # every keyword of asyncpg.connect, so ours goes in untyped.)
    options: dict[str, Any] = {"connect": hosts.connect} if len(hosts.urls) > 1 else {}

    async def create(min_size: int) -> asyncpg.Pool[Any]:
        return await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=settings.pool_max_size,
            timeout=settings.connect_timeout_s,
            command_timeout=settings.command_timeout_s,
            server_settings=server_settings,
            **options,
        )

    pool: asyncpg.Pool[Any]
    try:
        pool = await trio_asyncio.aio_as_trio(create)(settings.pool_min_size)
    except TRANSLATED_ERRORS as error:
        log.error("database_unavailable_at_start", reason=describe_outage(error))
        pool = await trio_asyncio.aio_as_trio(create)(0)
    return pool


@asynccontextmanager
async def open_database(
    settings: DatabaseSettings, *, application: str, cleanup_s: float
) -> AsyncIterator[PostgresDatabase]:
    """Open the pools (the service starts even while Postgres is down) and close them."""
    if settings.url is None:
        raise ValueError("open_database needs settings.url (embedded servers set it)")
    keep_orphans_quiet()
    primary = await _create_pool(settings, settings.url, application)
    replica = None
    try:
        if settings.replica_url is not None:
            replica = await _create_pool(settings, settings.replica_url, application)
        database = PostgresDatabase(settings, primary, replica)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(database.watch)
            yield database
            nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(cleanup_s, shield=True) as cleanup:
            for pool in (replica, primary):
                if pool is not None:
                    await trio_asyncio.aio_as_trio(pool.close)()
        if cleanup.cancelled_caught:
            for pool in (replica, primary):
                if pool is not None:
                    pool.terminate()
            log.warning("database_pools_terminated", cleanup_s=cleanup_s)
