"""Reading a booking (manage token) apart from writing one: reads that cannot be
answered never trip the booking breaker, and nobody learns which bookings exist."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
import trio
import trio_asyncio

from actors import BookingReader, Lookup
from adapters import PostgresBookingStore, RedisBookingCache, open_database, open_redis
from config import Settings
from supervisors import ConnectionLost, NotFound
from tests._booking import (
    book,
    booking_body,
    local,
    next_weekday,
    prepare_database,
    running_tree,
)
from tests._caches import CountingCache
from tests._service import with_redis_url
from tests.conftest import NO_REDIS_URL

MONDAY = 0


def _url(settings: Settings) -> str:
    assert settings.database.url is not None
    return settings.database.url


async def test_lookups_with_redis_down_never_open_the_booking_breaker(
    settings: Settings,
) -> None:
    """Redis unreachable: five lookups (unknown ids, and cancels of them) before every
    booking answer 503 dependency_unavailable, and all 40 bookings are still 201 (the
    lookups once opened the SlotBooker's breaker: every booking then got circuit_open)."""
    no_redis = with_redis_url(settings, NO_REDIS_URL)
    first_monday = next_weekday(MONDAY)
    starts = [
        local(first_monday + timedelta(weeks=week), hour)
        for week in range(5)
        for hour in range(9, 17)
    ]
    booked: list[int] = []
    looked_up: Counter[tuple[int, str]] = Counter()
    async with trio_asyncio.open_loop():
        await prepare_database(_url(settings))
        async with running_tree(no_redis) as client:
            with trio.fail_after(120):
                for i, start in enumerate(starts):
                    for n in range(5):
                        path = f"/v1/appointments/{uuid.uuid4()}"
                        headers = {"X-Manage-Token": "guess"}
                        if n % 2:
                            answer = await client.post(f"{path}/cancel", headers=headers)
                        else:
                            answer = await client.get(path, headers=headers)
                        looked_up[(answer.status_code, answer.json()["error"]["code"])] += 1
                    customer = {  # a customer each: the per-customer cap is not the subject
                        "name": "Ada",
                        "email": f"ada{i}@example.com",
                        "phone": f"+44 7700 9{i:05d}",
                        "postcode": "LS1 6HD",
                    }
                    made = await book(client, booking_body(start, customer=customer))
                    booked.append(made.status_code)
    assert booked == [201] * len(starts)
    assert looked_up == Counter({(503, "dependency_unavailable"): 5 * len(starts)})


async def test_an_unknown_id_and_a_wrong_token_answer_the_same(settings: Settings) -> None:
    """With Redis up both are 404 not_found; with Redis down both are 503 (the
    booking exists in Postgres, but a pending one could be in Redis)."""
    no_redis = with_redis_url(settings, NO_REDIS_URL)
    start = local(next_weekday(MONDAY), 11)
    answers: dict[str, list[tuple[int, str]]] = {"up": [], "down": []}
    async with trio_asyncio.open_loop():
        await prepare_database(_url(settings))
        async with running_tree(settings) as client:
            made = (await book(client, booking_body(start))).json()
        for state, chosen in (("up", settings), ("down", no_redis)):
            async with running_tree(chosen) as client:
                for appointment_id in (made["id"], str(uuid.uuid4())):
                    answer = await client.get(
                        f"/v1/appointments/{appointment_id}",
                        headers={"X-Manage-Token": "not-the-token"},
                    )
                    answers[state].append((answer.status_code, answer.json()["error"]["code"]))
                right = await client.get(
                    f"/v1/appointments/{made['id']}",
                    headers={"X-Manage-Token": made["manage_token"]},
                )
                assert right.status_code == 200  # from Postgres, Redis or not
    assert answers["up"] == [(404, "not_found")] * 2
    assert answers["down"] == [(503, "dependency_unavailable")] * 2


async def test_unknown_ids_and_wrong_tokens_cost_the_same_work(settings: Settings) -> None:
    """A wrong token for a real booking does the same reads as an unknown id and as the
    right token (one Redis read, one Postgres read): their latency tells nothing."""
    start = local(next_weekday(MONDAY), 12)
    async with trio_asyncio.open_loop():
        await prepare_database(_url(settings))
        async with running_tree(settings) as client:
            made = (await book(client, booking_body(start))).json()
        async with (
            open_database(settings.database, application="tests", cleanup_s=1.0) as database,
            open_redis(settings.redis, cleanup_s=1.0) as redis,
        ):
            cache = CountingCache(redis)
            reader = BookingReader(PostgresBookingStore(database), RedisBookingCache(cache))
            spent: list[int] = []
            for appointment_id in (made["id"], str(uuid.uuid4())):
                before = cache.operations
                with pytest.raises(NotFound):
                    await reader.handle(Lookup(appointment_id, "not-the-token"))
                spent.append(cache.operations - before)
            before = cache.operations
            found = await reader.handle(Lookup(made["id"], made["manage_token"]))
            assert found.id == made["id"]
            spent.append(cache.operations - before)
    assert spent == [1, 1, 1]


async def test_a_reader_error_is_the_outage_not_a_crash(settings: Settings) -> None:
    """With Redis down and no such booking in Postgres, the reader answers with the
    Redis outage (ConnectionLost), which the gateway maps to 503."""
    no_redis = with_redis_url(settings, NO_REDIS_URL)
    async with trio_asyncio.open_loop():
        await prepare_database(_url(settings))
        async with (
            open_database(no_redis.database, application="tests", cleanup_s=1.0) as database,
            open_redis(no_redis.redis, cleanup_s=1.0) as redis,
        ):
            reader = BookingReader(PostgresBookingStore(database), RedisBookingCache(redis))
            with pytest.raises(ConnectionLost):
                await reader.handle(Lookup(str(uuid.uuid4()), "t"))
