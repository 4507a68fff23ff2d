"""The Postgres adapter on the real server: one hop per operation, errors, outages."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import structlog
import structlog.testing
import trio
import trio.testing
import trio_asyncio

from adapters import Connection, PostgresDatabase, open_database
from chaos import Proxy, open_proxy
from config import DatabaseSettings
from supervisors import Conflict, ConnectionLost, InvalidData, OperationTimeout
from tests.conftest import CLOSED_PORT, port_of

pytestmark = pytest.mark.usefixtures("migrated_url")

BOUND_S = 20.0  # no test here may hang past this


def fast(url: str, **overrides: object) -> DatabaseSettings:
    """Short timeouts and backoff so outage tests run in well under a second."""
    options: dict[str, object] = {
        "url": url,
        "connect_timeout_s": 0.5,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.4,
        "pool_min_size": 1,
        "pool_max_size": 4,
    }
    options.update(overrides)
    return DatabaseSettings(**options)  # type: ignore[arg-type]


def via(proxy: Proxy, url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.replace(f":{port_of(url)}", f":{proxy.port}")
    return urlunsplit(parts._replace(netloc=netloc))


@asynccontextmanager
async def database(settings: DatabaseSettings) -> AsyncIterator[PostgresDatabase]:
    async with open_database(settings, application="tests", cleanup_s=2.0) as db:
        yield db


async def insert_showroom(connection: Connection, showroom_id: str) -> None:
    await connection.execute(
        "INSERT INTO showrooms (id, name, address, city, postcode) VALUES ($1, $2, $3, $4, $5)",
        showroom_id,
        f"Showroom {showroom_id}",
        "1 High Street",
        "Leeds",
        "LS1 1AA",
    )


async def count_showrooms(connection: Connection) -> int:
    value = await connection.fetchval("SELECT count(*) FROM showrooms")
    assert isinstance(value, int)
    return value


async def test_an_operation_runs_its_queries_on_one_connection(migrated_url: str) -> None:
    """A transaction of several statements is one operation, committed together."""

    async def two_in_a_transaction(connection: Connection) -> int:
        async with connection.transaction():
            await insert_showroom(connection, "tx-a")
            await insert_showroom(connection, "tx-b")
        return await count_showrooms(connection)

    async with trio_asyncio.open_loop(), database(fast(migrated_url)) as db:
        with trio.fail_after(BOUND_S):
            before = await db.run(count_showrooms, readonly=True)
            assert await db.run(two_in_a_transaction) == before + 2


async def test_constraint_violations_become_domain_errors(migrated_url: str) -> None:
    """Duplicate key -> Conflict; NOT NULL -> InvalidData; nothing of asyncpg leaks."""

    async def null_name(connection: Connection) -> None:
        await connection.execute(
            "INSERT INTO showrooms (id, name, address, city, postcode) "
            "VALUES ('n', NULL, 'a', 'b', 'c')"
        )

    async with trio_asyncio.open_loop(), database(fast(migrated_url)) as db:
        with trio.fail_after(BOUND_S):
            await db.run(lambda c: insert_showroom(c, "dup"))
            with pytest.raises(Conflict) as conflict:
                await db.run(lambda c: insert_showroom(c, "dup"))
            assert (conflict.value.code, conflict.value.constraint) == (
                "duplicate",
                "showrooms_pkey",
            )
            with pytest.raises(InvalidData):
                await db.run(null_name)
            assert db.statistics().primary.up


async def test_a_runaway_statement_is_cancelled_by_the_server(migrated_url: str) -> None:
    """statement_timeout cuts a slow query: OperationTimeout, the database stays up."""

    async def slow(connection: Connection) -> None:
        await connection.execute("SELECT pg_sleep(5)")

    settings = fast(migrated_url, statement_timeout_s=0.2)
    async with trio_asyncio.open_loop(), database(settings) as db:
        with trio.fail_after(BOUND_S):
            with pytest.raises(OperationTimeout):
                await db.run(slow)
            assert db.statistics().primary.up
            await db.ping()


async def test_an_outage_is_refused_fast_and_recovery_is_noticed(migrated_url: str) -> None:
    """Down: one real failure, then refusals without connecting until the next probe."""
    async with (
        trio_asyncio.open_loop(),
        open_proxy(port_of(migrated_url)) as proxy,
        database(fast(via(proxy, migrated_url))) as db,
    ):
        with trio.fail_after(BOUND_S):
            await db.ping()
            proxy.reset()
            with pytest.raises(ConnectionLost):
                await db.run(count_showrooms)
            attempts = proxy.accepted
            with pytest.raises(ConnectionLost) as refused:
                await db.run(count_showrooms)
            assert refused.value.retry_after is not None
            assert 0 < refused.value.retry_after <= 0.4
            assert proxy.accepted == attempts  # refused without trying
            assert not db.statistics().primary.up
            proxy.forward()
            while True:  # the next probe is due within reconnect_max_s
                try:
                    await db.run(count_showrooms)
                    break
                except ConnectionLost as lost:
                    await trio.sleep(lost.retry_after or 0.05)
            stats = db.statistics().primary
            assert (stats.up, stats.outages) == (True, 1)


async def test_a_silent_primary_is_reported_as_a_connection_timeout(migrated_url: str) -> None:
    """A blackholed server (no RST) fails within connect_timeout_s, named as a timeout."""
    async with trio_asyncio.open_loop(), open_proxy(port_of(migrated_url)) as proxy:
        proxy.blackhole()
        async with database(fast(via(proxy, migrated_url), pool_min_size=0)) as db:
            with (
                trio.fail_after(BOUND_S),
                pytest.raises(ConnectionLost, match="connection timeout"),
            ):
                await db.ping()


async def test_the_service_starts_while_postgres_is_down(migrated_url: str) -> None:
    """open_database succeeds with the server unreachable; the pool connects later."""
    async with trio_asyncio.open_loop(), open_proxy(port_of(migrated_url)) as proxy:
        proxy.reset()
        async with database(fast(via(proxy, migrated_url))) as db:
            with trio.fail_after(BOUND_S):
                with pytest.raises(ConnectionLost):
                    await db.ping()
                proxy.forward()
                await db.ping()


async def test_reads_go_to_the_replica_while_the_primary_is_down(migrated_url: str) -> None:
    """Primary unreachable: readonly operations are served by the replica, writes refused."""
    async with trio_asyncio.open_loop(), open_proxy(port_of(migrated_url)) as proxy:
        settings = fast(via(proxy, migrated_url), replica_url=migrated_url)
        async with database(settings) as db:
            with trio.fail_after(BOUND_S):
                expected = await db.run(count_showrooms)  # from the primary, before
                proxy.reset()
                assert await db.run(count_showrooms, readonly=True) == expected
                assert await db.run(count_showrooms, readonly=True) == expected
                assert db.statistics().replica_reads == 2
                with pytest.raises(ConnectionLost):
                    await db.run(lambda c: insert_showroom(c, "while-down"))


async def test_connections_dropped_by_a_restart_are_replaced(migrated_url: str) -> None:
    """Every pooled connection cut at once (server restart): the next read just works."""
    async with (
        trio_asyncio.open_loop(),
        open_proxy(port_of(migrated_url)) as proxy,
        database(fast(via(proxy, migrated_url), pool_min_size=2)) as db,
    ):
        with trio.fail_after(BOUND_S):
            await db.run(count_showrooms, readonly=True)
            proxy.cut()
            await db.run(count_showrooms, readonly=True)
            assert db.statistics().primary.outages == 0


async def test_an_orphaned_asyncpg_failure_is_logged_not_fatal(migrated_url: str) -> None:
    """asyncpg work nobody awaits any more (as its pool's release after a cancelled
    call) fails: the event loop lives on and the failure is logged; trio-asyncio's own
    handler would have re-raised it and ended the loop."""
    with structlog.testing.capture_logs() as logs:
        async with trio_asyncio.open_loop(), database(fast(migrated_url)) as db:
            with trio.fail_after(BOUND_S):
                orphan = asyncio.get_event_loop().create_task(
                    asyncpg.connect(f"postgresql://127.0.0.1:{CLOSED_PORT}/none")
                )
                ended = trio.Event()
                orphan.add_done_callback(lambda _: ended.set())
                await ended.wait()
                del orphan  # never retrieved: reported when collected
                gc.collect()
                await trio.testing.wait_all_tasks_blocked()  # whatever the handler started
                assert await db.run(count_showrooms) >= 0  # the loop still serves
    events = [e for e in logs if e["event"] == "abandoned_call_cleanup_failed"]
    assert [e["reason"] for e in events] == ["connection refused"]
