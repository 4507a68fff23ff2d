"""Slow is down (spec: "Add 2s latency -> Circuit breaker opens; API gateway returns 503").

A loopback proxy adds 1 s each way (+2 s per round trip) to every Postgres or Redis
connection while customers keep booking. After a short warm-up the gate calls the
dependency slow and nobody waits for it any more: counted by the calls the gate let
through (and the bytes through the proxy), not by wall-clock times. Then the latency
goes, the probe and one trial reopen the gate, and everything accepted meanwhile ends
CONFIRMED, never twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import trio
import trio_asyncio

from adapters import GateState, PostgresDatabase, RedisCache
from chaos import open_proxy
from config import Settings
from tests._booking import (
    book,
    booking_body,
    eventually,
    local,
    next_weekday,
    prepare_database,
    running_tree_and_root,
)
from tests._service import with_database_url, with_redis_url
from tests.conftest import REDIS_PORT, fetch, port_of
from tests.test_postgres import via

ONE_WAY_S = 1.0  # +2 s per round trip
CUSTOMERS = 3
OPEN_ANSWERS = 4  # per customer, once the gate is down


def slot(customer: int, n: int) -> str:
    """The n-th slot of a customer: their own weekday, 09:00-16:00, week after week."""
    day = next_weekday(customer, weeks_ahead=2) + timedelta(weeks=n // 8)
    return local(day, 9 + n % 8)


def body(customer: int, n: int) -> dict[str, Any]:
    """Each booking by a customer of its own (the per-customer cap plays no part)."""
    return booking_body(
        slot(customer, n),
        customer={
            "name": "Ada Lovelace",
            "email": f"ada{customer}.{n}@example.com",
            "phone": f"+44 7700 9{customer:02d}{n:03d}",
            "postcode": "LS1 6HD",
        },
    )


async def steady_load(
    client: httpx.AsyncClient, is_open: Callable[[], bool], *, first: int = 0
) -> list[tuple[bool, httpx.Response]]:
    """CUSTOMERS customers booking one slot after another until each has had
    OPEN_ANSWERS answers to bookings sent while ``is_open()``: (sent while open, answer)."""
    answers: list[tuple[bool, httpx.Response]] = []

    async def customer(c: int) -> None:
        n, seen_open = first, 0
        while seen_open < OPEN_ANSWERS:
            sent_open = is_open()
            answer = await book(client, body(c, n), key=f"slow-{c}-{n}")
            answers.append((sent_open, answer))
            seen_open += sent_open
            n += 1

    async with trio.open_nursery() as nursery:
        for c in range(CUSTOMERS):
            nursery.start_soon(customer, c)
    return answers


async def test_a_slow_postgres_is_refused_fast_and_bookings_are_held_then_confirmed(
    settings: Settings,
) -> None:
    """+2 s on Postgres: after the warm-up every booking is 202 PENDING at once and no
    call reaches Postgres; /health/ready says why; without the latency the gate
    reopens, bookings are 201 again and every 202 ends CONFIRMED, once."""
    url = settings.database.url
    assert url is not None
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        slow = with_database_url(settings, via(proxy, url))
        # Connections opened before the latency (the pool's minimum) answer slowly; a
        # new one would mostly fail to connect in time, which is an outage too.
        database_settings = dataclasses.replace(
            slow.database, slow_calls=3, pool_min_size=4, connect_timeout_s=4.0
        )
        slow = dataclasses.replace(slow, database=database_settings)
        async with running_tree_and_root(slow) as (client, root):
            database: PostgresDatabase = root.handle("postgres")
            assert (await book(client, body(0, 0), key="before")).status_code == 201
            proxy.slow(ONE_WAY_S)
            marks: dict[str, int] = {}

            def is_open() -> bool:
                stats = database.statistics().primary
                if stats.state is not GateState.DOWN:
                    return False
                # The first booking sent once the gate is down: from here on count.
                marks.setdefault("admitted", stats.admitted)
                marks.setdefault("bytes_up", proxy.bytes_up)
                return True

            answers = await steady_load(client, is_open, first=1)
            during = database.statistics().primary
            ready = await client.get("/health/ready")
            health = await client.get("/health")
            bytes_up = proxy.bytes_up
            proxy.forward()
            recovered = await eventually(booker(client, 0, 40), within_s=30)
            accepted = [a.json() for _, a in answers if a.status_code == 202]
            await eventually(lambda: _all_confirmed(client, accepted), within_s=30)
        rows = await fetch(
            url,
            "SELECT consultant_id, starts_at, count(*) FROM appointments"
            " WHERE status = 'CONFIRMED' GROUP BY 1, 2 HAVING count(*) > 1",
        )
    sent_open = [a for was_open, a in answers if was_open]
    assert len(sent_open) == CUSTOMERS * OPEN_ANSWERS
    assert {a.status_code for a in sent_open} == {202}
    assert all(a.json()["status"] == "PENDING" for a in sent_open)
    # Once the gate was down no call went through to Postgres (only its probes, a
    # few bytes each, went on: far less than one booking transaction).
    assert during.admitted == marks["admitted"]
    assert during.refused > 0
    assert bytes_up - marks["bytes_up"] < 2_000
    assert ready.status_code == 503
    # Pooled connections answered slowly; new ones could not even connect in time.
    reason = ready.json()["checks"]["database"]
    assert reason.startswith(("error: slow (p99 ", "error: connection timeout")), reason
    print("database check while slow:", reason)
    assert health.status_code == 503
    assert health.json()["checks"]["database"] == reason
    assert recovered.status_code == 201
    assert rows == []  # no slot booked twice


def booker(client: httpx.AsyncClient, customer: int, first: int) -> Callable[[], Awaitable[Any]]:
    """Books the customer's next slot on each call (a new key: a retry would replay
    its first answer); returns the answer once it is 201."""
    tries = iter(range(first, first + 1000))

    async def attempt() -> httpx.Response | None:
        n = next(tries)
        answer = await book(client, body(customer, n), key=f"after-{customer}-{n}")
        return answer if answer.status_code == 201 else None

    return attempt


async def _all_confirmed(client: httpx.AsyncClient, bookings: list[dict[str, Any]]) -> bool:
    for booking in bookings:
        shown = await client.get(
            f"/v1/appointments/{booking['id']}",
            headers={"X-Manage-Token": booking["manage_token"]},
        )
        if shown.status_code != 200 or shown.json()["status"] != "CONFIRMED":
            return False
    return True


async def test_a_slow_redis_is_refused_fast_and_bookings_go_straight_to_postgres(
    settings: Settings,
) -> None:
    """+2 s on Redis: after a few short timeouts the gate calls it slow; bookings are
    201 without touching Redis; /health is degraded and says why; it comes back."""
    async with trio_asyncio.open_loop(), open_proxy(REDIS_PORT) as proxy:
        assert settings.database.url is not None
        await prepare_database(settings.database.url)
        slow = with_redis_url(settings, f"redis://127.0.0.1:{proxy.port}/0")
        async with running_tree_and_root(slow) as (client, root):
            cache: RedisCache = root.handle("redis")
            assert (await book(client, body(0, 0), key="before")).status_code == 201
            proxy.slow(ONE_WAY_S)
            marks: dict[str, int] = {}

            def is_open() -> bool:
                stats = cache.statistics()
                if stats.state is not GateState.DOWN:
                    return False
                marks.setdefault("admitted", stats.admitted)
                return True

            answers = await steady_load(client, is_open, first=1)
            during = cache.statistics()
            health = await client.get("/health")
            proxy.forward()
            await eventually(lambda: _redis_ok(client), within_s=30)
    sent_open = [a for was_open, a in answers if was_open]
    assert len(sent_open) == CUSTOMERS * OPEN_ANSWERS
    assert {a.status_code for a in sent_open} == {201}
    assert during.admitted == marks["admitted"]  # nothing waited on Redis
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["checks"]["redis"].startswith("error: slow (p99 ")


async def _redis_ok(client: httpx.AsyncClient) -> bool:
    health = await client.get("/health")
    return bool(health.json()["checks"]["redis"] == "ok")


async def test_a_stalled_postgres_never_delays_live_or_a_cached_availability_read(
    settings: Settings,
) -> None:
    """Postgres frozen (calls allowed to wait 30 s, in the bulkhead too): while every
    connection and part of the bulkhead's queue are taken by uncached availability
    reads stuck on it, /health/live and a cached day answer, and none of the stuck
    ones has: by structure they never wait on Postgres."""
    url = settings.database.url
    assert url is not None
    patient = dataclasses.replace(
        settings,
        database=dataclasses.replace(settings.database, call_timeout_s=30.0, pool_wait_s=30.0),
        booking=dataclasses.replace(settings.booking, flush_timeout_s=31.0),
        http=dataclasses.replace(settings.http, request_timeout_s=33.0),
    )
    monday = next_weekday(0)
    queued = 5  # beyond the pool, waiting in the bulkhead's queue
    stuck = patient.database.pool_max_size + queued

    def day(weeks: int) -> dict[str, str]:
        d = str(monday + timedelta(weeks=weeks))
        return {"type": "SHOWROOM", "showroom_id": "leeds", "from": d, "to": d}

    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        async with running_tree_and_root(with_database_url(patient, via(proxy, url))) as (
            client,
            root,
        ):
            database: PostgresDatabase = root.handle("postgres")
            assert (await client.get("/v1/appointments/availability", params=day(0))).is_success
            proxy.freeze()
            stuck_done: list[int] = []

            async def uncached(weeks: int) -> None:
                await client.get("/v1/appointments/availability", params=day(weeks), timeout=60)
                stuck_done.append(weeks)

            async with trio.open_nursery() as nursery:
                for weeks in range(1, stuck + 1):
                    nursery.start_soon(uncached, weeks)
                # Every connection in use and (at least) the extra reads queued.
                await eventually(
                    lambda: _bulkhead_full(database, stuck - queued, queued), every_s=0.01
                )
                cached = await client.get("/v1/appointments/availability", params=day(0))
                live = await client.get("/health/live")
                done_meanwhile = list(stuck_done)
                proxy.forward()
    assert cached.status_code == 200
    assert live.status_code == 200
    assert done_meanwhile == []
    assert sorted(stuck_done) == list(range(1, stuck + 1))


async def _bulkhead_full(database: PostgresDatabase, pool: int, queued: int) -> bool:
    stats = database.statistics()
    return stats.in_flight == pool and stats.waiting >= queued
