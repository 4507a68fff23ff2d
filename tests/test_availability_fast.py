"""Availability on the running service: a booking in one process is heard at once by
another's memory (which otherwise answers a warm day with no Redis round trip) and
forgotten by its own as it is applied; the fast route answers what the Quart route
answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from actors import Availability, AvailabilityMemory, FindSlots, RosterSource
from actors._calendar import AppointmentType
from adapters import CacheChanges, PostgresBookingStore, RedisBookingCache, open_redis
from config import RedisSettings, Settings
from supervisors import DependencyError
from tests._booking import (
    BOUND_S,
    book,
    booking_body,
    eventually,
    local,
    next_weekday,
    prepare_database,
    redis_answers,
    running_tree,
    running_tree_and_root,
)
from tests._caches import BrokenCache, CountingCache


async def test_the_process_that_applies_a_change_forgets_it_as_it_applies_it(
    redis_url: str, redis_prefix: str
) -> None:
    """``applied`` hears the days of a change as it is applied (the booking process
    reads its own writes, whatever the channel's delay), and also when Redis refused
    it (what this process holds of those days is stale either way)."""
    day = next_weekday(1)
    heard: list[list[date]] = []
    changes = CacheChanges(bumps=[day])
    async with (
        trio_asyncio.open_loop(),
        open_redis(RedisSettings(url=redis_url, prefix=redis_prefix), cleanup_s=1.0) as cache,
    ):
        working = RedisBookingCache(cache, applied=lambda days: heard.append(list(days)))
        await working.apply(changes, keep_s=60, bump_ttl_s=60)
        await working.apply(CacheChanges(answers=[("k", "a")]), keep_s=60, bump_ttl_s=60)
        after_applied = list(heard)
        broken = RedisBookingCache(
            BrokenCache(cache), applied=lambda days: heard.append(list(days))
        )
        with pytest.raises(DependencyError):
            await broken.apply(changes, keep_s=60, bump_ttl_s=60)
    assert after_applied == [[day]]  # no bumps, nothing to forget
    assert heard == [[day], [day]]


def _following(memory: AvailabilityMemory) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return memory.following

    return check


async def test_a_booking_in_one_process_is_heard_by_another_at_once(settings: Settings) -> None:
    """A second process's availability (its own memory, following the changes'
    channel): its first read asks Redis, the next twenty do not; a booking through
    the service is gone from its answer within a moment, long before its 30 s memory
    would run out."""
    url = settings.database.url
    assert url is not None
    memory_s = settings.booking.availability_fresh_s
    day = next_weekday(2)
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        async with (
            running_tree_and_root(settings) as (client, root),
            open_redis(settings.redis, cleanup_s=1.0) as cache,
            trio.open_nursery() as nursery,
        ):
            await redis_answers(client)
            memory = AvailabilityMemory(memory_s)
            nursery.start_soon(RedisBookingCache(cache).follow_changes, memory)
            counting = CountingCache(cache)
            other_cache = RedisBookingCache(counting)
            store = PostgresBookingStore(root.handle("postgres"))
            roster = RosterSource(lambda: store, lambda: other_cache, refresh_s=3600)
            other = Availability(store, other_cache, roster, settings.booking, memory=memory)
            showroom = FindSlots(AppointmentType.SHOWROOM, "leeds", None, day, day)

            async def starts() -> set[tuple[str, datetime]]:
                return {(s.consultant_id, s.start) for s in await other.find(showroom)}

            with trio.fail_after(BOUND_S):
                await eventually(_following(memory), every_s=0.01)
                before = await starts()
                asked = counting.operations
                for _ in range(20):
                    assert await starts() == before
                remembered = counting.operations - asked
                booked = await book(client, booking_body(local(day, 10)))
                assert booked.status_code == 201
                answer = booked.json()
                start = (answer["consultant_id"], datetime.fromisoformat(answer["start"]))

                async def gone() -> bool:
                    return start not in await starts()

                await eventually(gone, every_s=0.01)
            nursery.cancel_scope.cancel()
    assert start in before
    assert remembered == 0  # twenty warm reads: not one Redis round trip


async def test_the_fast_route_answers_what_the_quart_route_answers(settings: Settings) -> None:
    """Status, body and headers (but the request id) of availability on the fast
    route equal the Quart route's (reached with one more parameter, which the fast
    route leaves to it), for a week, a day with a booking, and bad queries."""
    url = settings.database.url
    assert url is not None
    settings = dataclasses.replace(
        settings, booking=dataclasses.replace(settings.booking, max_range_days=14)
    )
    varying = {"date", "x-request-id", "content-length"}
    day = next_weekday(3)
    past = day - timedelta(weeks=4)
    queries = [
        "type=SHOWROOM&showroom_id=leeds",
        f"type=showroom&showroom_id=leeds&from={day}&to={day + timedelta(days=2)}",
        f"type=ONLINE&category=KITCHEN&from={day}",
        "type=SHOWROOM",
        "showroom_id=leeds",
        "type=SHOWROOM&showroom_id=nowhere",
        "type=SHOWROOM&showroom_id=leeds&from=yesterday",
        f"type=SHOWROOM&showroom_id=leeds&from={day}&to={day + timedelta(days=30)}",
        f"type=SHOWROOM&showroom_id=leeds&from={day}&to={day - timedelta(days=1)}",
        f"type=SHOWROOM&showroom_id=leeds&from={past}&to={past + timedelta(days=6)}",
    ]
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        async with running_tree(settings) as client:
            await redis_answers(client)
            assert (await book(client, booking_body(local(day, 11)))).status_code == 201
            answers = []
            for query in queries:
                fast = await client.get(f"/v1/appointments/availability?{query}")
                routed = await client.get(f"/v1/appointments/availability?{query}&via=quart")
                answers.append((_answer(fast, varying), _answer(routed, varying)))
    for fast_answer, routed_answer in answers:
        assert fast_answer == routed_answer
    statuses = [fast[0] for fast, _ in answers]
    assert statuses == [200, 200, 200, 422, 422, 422, 422, 422, 422, 200]
    assert answers[1][0][1]["slots"]  # a real answer, not an empty one
    offered = {(s["consultant_id"], s["start"]) for s in answers[1][0][1]["slots"]}
    assert ("grace-okafor", local(day, 10)) in offered
    assert ("grace-okafor", local(day, 11)) not in offered  # booked
    assert answers[9][0][1]["slots"] == []  # past days: nothing to show


def _answer(response: httpx.Response, varying: set[str]) -> tuple[int, Any, dict[str, str]]:
    body = response.json()
    body.get("error", {}).pop("request_id", None)
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in varying}
    return response.status_code, body, headers
