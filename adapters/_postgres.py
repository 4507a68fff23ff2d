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
from typing import Any, Protocol

import asyncpg
import structlog
import trio
import trio_asyncio
from asyncpg.pool import PoolConnectionProxy

from adapters._gate import GateStatistics, ReconnectGate, describe_outage
from config import DatabaseSettings
from supervisors import (
    Conflict,
    ConnectionLost,
    Contention,
    DatabaseError,
    InvalidData,
    LomashError,
    OperationTimeout,
)

__all__ = [
    "TRANSLATED_ERRORS",
    "Connection",
    "Database",
    "DatabaseStatistics",
    "Operation",
    "PostgresDatabase",
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
        """Check the primary answers (bypasses the reconnect gate; reopens it on success)."""
        ...

    def statistics(self) -> DatabaseStatistics: ...


@dataclass(frozen=True, slots=True)
class DatabaseStatistics:
    primary: GateStatistics
    replica: GateStatistics | None
    replica_reads: int


# asyncpg / OS errors that mean "the server is not reachable or not serving": the
# outage class. 25006 (read-only transaction) is a write sent to a standby, as happens
# right after a failover until DNS moves: an outage of the primary too.
_OUTAGE_SQLSTATES = {"57P01", "57P02", "57P03", "53300", "25006"}
_CONTENTION_SQLSTATES = {"40001", "40P01", "55P03"}
_CONFLICT_SQLSTATES = {"23505": "duplicate", "23P01": "overlap", "23503": "reference"}
_BAD_DATA_SQLSTATES = {"23502", "23514"}


def translate(error: BaseException, *, target: str, statement_timeout_s: float) -> LomashError:
    """The project's error for an asyncpg / OS error (the one translation point)."""
    if isinstance(error, asyncpg.PostgresError):
        state = error.sqlstate or ""
        if state in _OUTAGE_SQLSTATES or state.startswith("08"):
            return ConnectionLost(describe_outage(error), dependency=target)
        if state == "57014":
            return OperationTimeout(
                "statement timeout", dependency=target, timeout_s=statement_timeout_s
            )
        if state in _CONTENTION_SQLSTATES:
            return Contention(f"contention ({state})", dependency=target)
        constraint = getattr(error, "constraint_name", None)
        if state in _CONFLICT_SQLSTATES:
            return Conflict(
                f"{_CONFLICT_SQLSTATES[state]} violates {constraint}",
                code=_CONFLICT_SQLSTATES[state],
                constraint=constraint,
            )
        if state in _BAD_DATA_SQLSTATES or state.startswith("22"):
            return InvalidData(str(error).splitlines()[0], constraint=constraint)
        return DatabaseError(f"{type(error).__name__}: {error}", sqlstate=state or None)
    if isinstance(error, OSError | TimeoutError | asyncio.TimeoutError | asyncpg.InterfaceError):
        return ConnectionLost(describe_outage(error), dependency=target)
    return DatabaseError(f"{type(error).__name__}: {error}", sqlstate=None)


TRANSLATED_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class PostgresDatabase:
    """The primary pool, an optional replica pool, and a reconnect gate for each."""

    def __init__(
        self,
        settings: DatabaseSettings,
        primary: asyncpg.Pool[Any],
        replica: asyncpg.Pool[Any] | None,
    ) -> None:
        self._settings = settings
        self._primary = primary
        self._replica = replica
        self._primary_gate = ReconnectGate(
            "postgres", min_s=settings.reconnect_min_s, max_s=settings.reconnect_max_s
        )
        self._replica_gate = ReconnectGate(
            "postgres-replica", min_s=settings.reconnect_min_s, max_s=settings.reconnect_max_s
        )
        self._replica_reads = 0

    async def run[T](
        self, operation: Operation[T], *, readonly: bool = False, idempotent: bool = False
    ) -> T:
        gate = self._primary_gate
        try:
            gate.check()
            retry_stale = readonly or idempotent
            return await self._hop(self._primary, gate, operation, retry_stale=retry_stale)
        except ConnectionLost:
            if readonly and self._replica is not None:
                self._replica_reads += 1
                self._replica_gate.check()
                return await self._hop(
                    self._replica, self._replica_gate, operation, retry_stale=True
                )
            raise

    async def ping(self) -> None:
        await self._hop(self._primary, self._primary_gate, _select_one, retry_stale=True)

    def statistics(self) -> DatabaseStatistics:
        return DatabaseStatistics(
            primary=self._primary_gate.statistics(),
            replica=self._replica_gate.statistics() if self._replica is not None else None,
            replica_reads=self._replica_reads,
        )

    async def _hop[T](
        self,
        pool: asyncpg.Pool[Any],
        gate: ReconnectGate,
        operation: Operation[T],
        *,
        retry_stale: bool,
    ) -> T:
        try:
            result: T = await trio_asyncio.aio_as_trio(self._in_asyncio)(
                pool, gate.dependency, operation, retry_stale
            )
        except ConnectionLost as lost:
            gate.failed(lost.message)
            raise
        except trio.Cancelled:
            raise
        gate.succeeded()
        return result

    async def _in_asyncio[T](
        self, pool: asyncpg.Pool[Any], target: str, operation: Operation[T], retry_stale: bool
    ) -> T:
        """Runs on the asyncio side of the bridge: acquire, run, translate."""
        attempts = 2 if retry_stale else 1
        for attempt in range(attempts):
            try:
                async with pool.acquire(timeout=self._settings.connect_timeout_s) as connection:
                    return await operation(connection)
            except TRANSLATED_ERRORS as error:
                translated = translate(
                    error, target=target, statement_timeout_s=self._settings.statement_timeout_s
                )
                # A pooled connection may have died with a restarted server: a read
                # may try once more on a fresh connection before calling it an outage.
                if isinstance(translated, ConnectionLost) and attempt + 1 < attempts:
                    continue
                raise translated from error
        raise AssertionError("unreachable")  # pragma: no cover


async def _select_one(connection: Connection) -> None:
    await connection.fetchval("SELECT 1")


async def _create_pool(settings: DatabaseSettings, url: str, application: str) -> asyncpg.Pool[Any]:
    """A pool; if the server is down now, a lazy one (min 0) that connects on demand."""
    server_settings = {
        "application_name": application,
        "statement_timeout": str(int(settings.statement_timeout_s * 1000)),
    }

    async def create(min_size: int) -> asyncpg.Pool[Any]:
        return await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=settings.pool_max_size,
            timeout=settings.connect_timeout_s,
            command_timeout=settings.command_timeout_s,
            server_settings=server_settings,
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
    primary = await _create_pool(settings, settings.url, application)
    replica = None
    try:
        if settings.replica_url is not None:
            replica = await _create_pool(settings, settings.replica_url, application)
        yield PostgresDatabase(settings, primary, replica)
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
