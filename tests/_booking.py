"""The whole service tree in-process (real Postgres, Redis, HTTP) for booking tests."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import trio

from actors import LONDON
from adapters import load_seed, migrate_up, open_redis
from config import BookingSettings, JobSettings, Settings
from gateway._app import Lifecycle
from jobs import RedisJobQueue
from service._tree import build_tree
from supervisors import Supervisor, open_supervisor
from tests._service import service_settings
from tests.conftest import fetch

BOUND_S = 30.0

# A consultant of our own for the clock-change tests: Sundays 00:00-03:00 local.
NIGHT_OWL = (
    """INSERT INTO consultants (id, name, email, showroom_id, specialisations)
    VALUES ('night-owl', 'Night Owl', 'owl@lomashwood.example', 'leeds', '{KITCHEN}')""",
    """INSERT INTO consultant_hours (consultant_id, weekday, starts, ends)
    VALUES ('night-owl', 6, '00:00', '03:00')""",
)


def booking_settings(database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    """Test settings with a Redis prefix of the test's own and a fast job worker."""
    base = service_settings(database_url, redis_url, f"{redis_prefix}{secrets.token_hex(4)}:")
    return dataclasses.replace(
        base,
        max_body_bytes=4096,
        jobs=JobSettings(queues="bookings", poll_s=0.05, backoff_base_s=0.05),
        booking=BookingSettings(replay_retry_s=0.2, schedule_refresh_s=60.0),
    )


async def prepare_database(url: str, *extra_sql: str) -> None:
    """Migrations, the demo seed, and ``extra_sql`` statements (inside ``open_loop``)."""
    await migrate_up(url)
    await load_seed(url)
    for sql in extra_sql:
        await fetch(url, sql)


@asynccontextmanager
async def running_tree(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The production tree on a port the kernel picks (no free-port race), and a client
    for the URL the HTTP server reports when it is listening."""
    async with running_tree_and_root(settings) as (client, _):
        yield client


@asynccontextmanager
async def running_tree_and_root(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, Supervisor]]:
    """``running_tree``, and its root supervisor (whose ``handle("postgres")`` is the
    database the tree uses)."""
    tree = build_tree(settings, Lifecycle(), bind="127.0.0.1:0")
    async with open_supervisor(tree) as supervisor:
        [url] = supervisor.handle("http")
        async with httpx.AsyncClient(base_url=url, timeout=BOUND_S) as client:
            yield client, supervisor


def next_weekday(weekday: int, *, weeks_ahead: int = 2) -> date:
    """A local date ``weeks_ahead`` weeks away falling on ``weekday`` (0 = Monday)."""
    today = datetime.now(LONDON).date() + timedelta(weeks=weeks_ahead)
    return today + timedelta(days=(weekday - today.weekday()) % 7)


def local(day: date, hour: int) -> str:
    """ISO start of ``hour``:00 London time on ``day``, with its offset."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=LONDON).isoformat()


def booking_body(start: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "SHOWROOM",
        "category": "KITCHEN",
        "start": start,
        "showroom_id": "leeds",
        "consultant_id": "grace-okafor",
        "customer": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+44 7700 900123",
            "postcode": "LS1 6HD",
        },
    }
    body.update(changes)
    return body


async def book(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post("/v1/appointments", json=body, headers=headers)


async def eventually(check: Any, *, within_s: float = BOUND_S, every_s: float = 0.1) -> Any:
    """Poll ``check`` (async, returns a truthy value when done) until it holds."""
    with trio.fail_after(within_s):
        while True:
            if result := await check():
                return result
            await trio.sleep(every_s)


async def redis_answers(client: httpx.AsyncClient) -> None:
    """Wait until the service's Redis gate is open: a first connect may time out while
    the tree starts, and what needs Redis (sessions, rate limits) degrades meanwhile."""

    async def ok() -> bool:
        return bool((await client.get("/health")).json()["checks"]["redis"] == "ok")

    await eventually(ok, within_s=10)


async def announced(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """The notification jobs waiting in the queue for the (future) notifier, once the
    outbox relay has moved every committed one there: (kind, payload), oldest first.
    Call it while the tree (and so its relay) runs."""
    assert settings.database.url is not None
    url = settings.database.url

    async def relayed() -> bool:
        waiting: int = (await fetch(url, "SELECT count(*) FROM outbox"))[0][0]
        return waiting == 0

    await eventually(relayed)
    async with open_redis(settings.redis, cleanup_s=1.0) as cache:
        queue = RedisJobQueue(cache, prefix="jobs")
        leases = await queue.lease("notifications", worker="test", limit=1000, wait_s=0.2)
    return [(lease.job.kind, dict(lease.job.payload)) for lease in leases]
