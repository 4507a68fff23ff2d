"""Test-wide setup: readable logs, and real Postgres / Redis isolated per test run.

Each test session creates its own database (``lomash_test_<random>``) on the
machine's PostgreSQL and drops it at the end; Redis keys get a per-run prefix that
is deleted at the end. ``LOMASH_TEST_POSTGRES_URL`` / ``LOMASH_TEST_REDIS_URL`` point
them elsewhere (defaults: 127.0.0.1:5432 as the current user, 127.0.0.1:6379).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
import structlog

structlog.configure(
    processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
    cache_logger_on_first_use=False,
)

ADMIN_URL = os.environ.get(
    "LOMASH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LOMASH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def database_url(name: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def create_database() -> str:
    """A fresh, empty database on the real server; returns its name."""
    name = f"lomash_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return name


def drop_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database of this test session's own (dropped afterwards)."""
    name = create_database()
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """URL of a brand-new database for one test (dropped afterwards)."""
    name = create_database()
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test session's own; its keys are deleted afterwards."""
    prefix = f"lomash_test:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture(scope="session")
def stripe_url() -> Iterator[str]:
    """Base URL of a local Stripe (localstripe on loopback) for this test session."""
    from devservers import local_stripe

    with local_stripe(wait_s=30.0) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_url(postgres_url: str) -> str:
    """The session database with every migration applied."""
    import trio_asyncio

    from adapters import migrate_up

    trio_asyncio.run(migrate_up, postgres_url)
    return postgres_url


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on a connection of its own (one bridge hop, inside
    ``trio_asyncio.open_loop``); its rows, if any."""
    import trio_asyncio

    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()

    rows: list[asyncpg.Record] = await trio_asyncio.aio_as_trio(run)()
    return rows


@pytest.fixture
def settings(fresh_database_url: str, redis_url: str, redis_prefix: str) -> Any:
    """The booking tests' settings: a fresh database, a Redis prefix of the test's own,
    fast job workers (tests/_booking.py)."""
    from tests._booking import booking_settings

    return booking_settings(fresh_database_url, redis_url, redis_prefix)


def port_of(url: str) -> int:
    """The port of a Postgres (default 5432) or Redis (default 6379) URL."""
    parts = urlsplit(url)
    return parts.port or (6379 if parts.scheme.startswith("redis") else 5432)


REDIS_PORT = port_of(REDIS_URL)

# A port bound for the whole run and never listened on: connecting to it is refused at
# once, and no other process can take it meanwhile (a "free port" could be).
_CLOSED = socket.socket()
_CLOSED.bind(("127.0.0.1", 0))
CLOSED_PORT: int = _CLOSED.getsockname()[1]
NO_REDIS_URL = f"redis://127.0.0.1:{CLOSED_PORT}/0"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The closed port's socket goes with the run."""
    _CLOSED.close()
