"""200 simultaneous attempts at one slot over two real `lomash serve` processes."""

from __future__ import annotations

import secrets
import uuid

import httpx
import pytest
import trio
import trio_asyncio

from tests._booking import booking_body, local, next_weekday, prepare_database
from tests.conftest import NO_REDIS_URL, fetch
from tests.test_process import service

ATTEMPTS = 200
MONDAY = 0


@pytest.mark.parametrize("redis", ["running", "stopped"])
async def test_two_processes_200_attempts_one_slot_one_booking(
    fresh_database_url: str, redis_url: str, redis_prefix: str, redis: str
) -> None:
    """Exactly one 201, every other answer 409 slot_taken, exactly one row; with Redis
    stopped (nothing listening where it should be) the EXCLUDE constraint alone."""
    async with trio_asyncio.open_loop():
        await prepare_database(fresh_database_url)
    environment = {
        "LOMASH_DATABASE_URL": fresh_database_url,
        "LOMASH_REDIS_URL": redis_url if redis == "running" else NO_REDIS_URL,
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}{secrets.token_hex(4)}:",
        "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
    }
    body = booking_body(local(next_weekday(MONDAY), 10))
    answers: list[httpx.Response] = []
    async with (
        service(environment, test_routes=False) as first,
        service(environment, test_routes=False) as second,
    ):
        limits = httpx.Limits(max_connections=ATTEMPTS)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            # Both processes have loaded the roster: the race is about the slot only.
            for url in (first.url, second.url):
                warm = await client.get(f"{url}/v1/appointments/availability?type=ONLINE")
                assert warm.status_code == 200
            start = trio.Event()

            async def attempt(url: str) -> None:
                await start.wait()
                answers.append(
                    await client.post(
                        f"{url}/v1/appointments",
                        json=body,
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                )

            async with trio.open_nursery() as nursery:
                for n in range(ATTEMPTS):
                    nursery.start_soon(attempt, first.url if n % 2 else second.url)
                await trio.sleep(0.2)
                start.set()
    async with trio_asyncio.open_loop():
        rows = await fetch(fresh_database_url, "SELECT consultant_id FROM appointments")
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * (ATTEMPTS - 1), {s: statuses.count(s) for s in statuses}
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"slot_taken"}
    assert [r[0] for r in rows] == ["grace-okafor"]


async def test_one_key_sent_to_two_processes_at_once_books_once(
    fresh_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """A client retrying one Idempotency-Key against both processes concurrently:
    every answer is the same 201 (the later ones wait on the key's row), one row."""
    async with trio_asyncio.open_loop():
        await prepare_database(fresh_database_url)
    environment = {
        "LOMASH_DATABASE_URL": fresh_database_url,
        "LOMASH_REDIS_URL": redis_url,
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}{secrets.token_hex(4)}:",
        "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
    }
    body = booking_body(local(next_weekday(MONDAY), 11))
    answers: list[httpx.Response] = []
    async with (
        service(environment, test_routes=False) as first,
        service(environment, test_routes=False) as second,
        httpx.AsyncClient(timeout=30.0) as client,
    ):
        for url in (first.url, second.url):
            await client.get(f"{url}/v1/appointments/availability?type=ONLINE")

        async def attempt(url: str) -> None:
            headers = {"Idempotency-Key": "one-key"}
            answers.append(await client.post(f"{url}/v1/appointments", json=body, headers=headers))

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(attempt, first.url if n % 2 else second.url)
    async with trio_asyncio.open_loop():
        rows = await fetch(fresh_database_url, "SELECT count(*) FROM appointments")
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert rows[0][0] == 1
