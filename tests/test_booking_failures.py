"""Booking through failures (spec: "Slot booking locks", "Database Failure Scenarios").

Postgres is taken away through a loopback proxy that resets every connection (a
failover, as the service sees it); Redis by pointing at a proxy or a closed port.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import httpx
import redis
import trio
import trio_asyncio

from adapters import RedisClient, open_redis
from chaos import open_proxy
from config import DatabaseSettings, Settings
from jobs import RedisJobQueue
from tests._booking import (
    announced,
    book,
    booking_body,
    eventually,
    local,
    next_weekday,
    prepare_database,
    running_tree,
)
from tests._service import with_database_url, with_redis_url
from tests.conftest import NO_REDIS_URL, REDIS_PORT, fetch, port_of
from tests.test_postgres import via

MONDAY = 0


def _direct_url(settings: Settings) -> str:
    assert settings.database.url is not None
    return settings.database.url


async def _status(client: httpx.AsyncClient, booking: dict[str, Any]) -> str:
    shown = await client.get(
        f"/v1/appointments/{booking['id']}", headers={"X-Manage-Token": booking["manage_token"]}
    )
    assert shown.status_code == 200, shown.text
    status: str = shown.json()["status"]
    return status


async def test_postgres_outage_bookings_wait_pending_then_confirm(settings: Settings) -> None:
    """Postgres unreachable: 202 PENDING (readable, slot held, retry-safe), availability
    from the cache; after it returns, every one is CONFIRMED once and announced."""
    url = _direct_url(settings)
    monday = next_weekday(MONDAY)
    day = {"type": "SHOWROOM", "showroom_id": "leeds", "from": str(monday), "to": str(monday)}
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        async with running_tree(with_database_url(settings, via(proxy, url))) as client:
            before = await book(client, booking_body(local(monday, 9)))
            cached = await client.get("/v1/appointments/availability", params=day)
            proxy.reset()
            pending = [
                await book(client, booking_body(local(monday, h)), key=f"p{h}")
                for h in (10, 11, 12)
            ]
            retried = await book(client, booking_body(local(monday, 10)), key="p10")
            contested = await book(client, booking_body(local(monday, 11)))
            during = [await _status(client, p.json()) for p in pending]
            guessed = await client.get(
                f"/v1/appointments/{pending[0].json()['id']}", headers={"X-Manage-Token": "x"}
            )
            unknown = await client.get(
                f"/v1/appointments/{uuid.uuid4()}", headers={"X-Manage-Token": "x"}
            )
            served = await client.get("/v1/appointments/availability", params=day)
            proxy.forward()
            for p in pending:
                await eventually(lambda p=p: _confirmed(client, p.json()), within_s=20)
            # Another request holds the slot's lock right now: the retry still gets
            # its first answer (it is found before any lock is looked at).
            holder = redis.Redis.from_url(settings.redis.url or "")
            epoch = int(datetime.fromisoformat(local(monday, 10)).timestamp())
            holder.set(f"{settings.redis.prefix}slot:grace-okafor:{epoch}", "other", px=60_000)
            holder.close()
            after_retry = await book(client, booking_body(local(monday, 10)), key="p10")
            jobs = await announced(settings)
        rows = await fetch(url, "SELECT id::text, status FROM appointments ORDER BY starts_at")
    assert before.status_code == 201
    assert cached.status_code == 200
    assert [p.status_code for p in pending] == [202, 202, 202]
    assert all(p.json()["status"] == "PENDING" for p in pending)
    assert all(p.json()["manage_token"] for p in pending)
    assert retried.status_code == 202
    assert retried.content == pending[0].content
    assert contested.status_code == 409  # the held slot refuses at once
    assert during == ["PENDING"] * 3
    # A wrong token on a pending booking and an unknown id look the same (503).
    assert (guessed.status_code, unknown.status_code) == (503, 503)
    assert guessed.json()["error"]["code"] == unknown.json()["error"]["code"]
    assert served.status_code == 200  # from the cache, minus the held slots
    free = {(s["start"], s["consultant_id"]) for s in served.json()["slots"]}
    for hour in (9, 10, 11, 12):
        assert (local(monday, hour), "grace-okafor") not in free
    assert (local(monday, 13), "grace-okafor") in free
    assert after_retry.content == pending[0].content  # the first answer, forever
    ids = {p.json()["id"] for p in pending} | {before.json()["id"]}
    assert {r[0] for r in rows} == ids
    assert [r[1] for r in rows] == ["CONFIRMED"] * 4
    assert sorted(p["appointment_id"] for _, p in jobs) == sorted(ids)
    assert {kind for kind, _ in jobs} == {"appointment.confirmed"}


async def _confirmed(client: httpx.AsyncClient, booking: dict[str, Any]) -> bool:
    return await _status(client, booking) == "CONFIRMED"


async def test_a_pending_booking_whose_slot_was_lost_is_cancelled_and_told(
    settings: Settings,
) -> None:
    """While pending, the slot is booked by a writer that never saw the Redis hold:
    the replay finds the conflict, writes CANCELLED with the reason, notifies."""
    url = _direct_url(settings)
    monday = next_weekday(MONDAY)
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        async with running_tree(with_database_url(settings, via(proxy, url))) as client:
            # A process that has seen Postgres once has the roster to check slots with.
            await client.get("/v1/appointments/availability", params={"type": "ONLINE"})
            proxy.reset()
            pending = await book(client, booking_body(local(monday, 10)))
            assert pending.status_code == 202, pending.text
            await fetch(
                url,
                """INSERT INTO appointments (id, reference, type, category, status,
                consultant_id, showroom_id, starts_at, ends_at, customer_name, customer_email,
                customer_phone, customer_postcode, manage_token_hash)
                VALUES (gen_random_uuid(), 'LW-OTHR-0001', 'SHOWROOM', 'KITCHEN', 'CONFIRMED',
                'grace-okafor', 'leeds', $1::timestamptz, $1::timestamptz + interval '1 hour',
                'Other', 'o@example.com', '+44 7700 900000', 'LS1 6HD', '\\x00')""",
                datetime.fromisoformat(local(monday, 10)),
            )
            proxy.forward()

            async def settled() -> str | None:
                status = await _status(client, pending.json())
                return status if status != "PENDING" else None

            final = await eventually(settled, within_s=20)
            shown = await client.get(
                f"/v1/appointments/{pending.json()['id']}",
                headers={"X-Manage-Token": pending.json()["manage_token"]},
            )
            jobs = await announced(settings)
    assert final == "CANCELLED"
    assert shown.json()["status_reason"] == "slot_taken_while_pending"
    assert jobs == [
        (
            "appointment.cancelled",
            {"appointment_id": pending.json()["id"], "reason": "slot_taken_while_pending"},
        )
    ]


async def test_postgres_and_redis_both_down_refuses_with_503_and_writes_nothing(
    settings: Settings,
) -> None:
    """Both stores down: 503 + Retry-After, the breaker opens after five, nothing written."""
    url = _direct_url(settings)
    monday = next_weekday(MONDAY)
    async with (
        trio_asyncio.open_loop(),
        open_proxy(port_of(url)) as pg,
        open_proxy(REDIS_PORT) as redis,
    ):
        await prepare_database(url)
        redis_url = f"redis://127.0.0.1:{redis.port}/0"
        both = with_redis_url(with_database_url(settings, via(pg, url)), redis_url)
        async with running_tree(both) as client:
            pg.reset()
            redis.reset()
            refused = [await book(client, booking_body(local(monday, h))) for h in range(9, 16)]
            shown = await client.get(
                "/v1/appointments/availability",
                params={"type": "ONLINE", "from": str(monday), "to": str(monday)},
            )
        rows = await fetch(url, "SELECT count(*) FROM appointments")
        # Nothing half-written in Redis either: no replay job, no hold, no pending record.
        async with open_redis(settings.redis, cleanup_s=1.0) as cache:
            queued = await RedisJobQueue(cache, prefix="jobs").statistics("bookings")

            async def keys(client: RedisClient) -> list[str]:
                found = await client.keys(cache.key("*"))
                return [k.decode() if isinstance(k, bytes) else k for k in found]

            left = await cache.run(keys)
    for answer in refused:
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
    # The SlotBooker's breaker: after min_calls (5) failures it opens and refuses at
    # the door, without trying Postgres and Redis for each booking.
    codes = [answer.json()["error"]["code"] for answer in refused]
    assert codes[:5] == ["dependency_unavailable"] * 5
    assert codes[5:] == ["circuit_open"] * 2
    assert shown.status_code == 503
    assert rows[0][0] == 0
    assert (queued.waiting, queued.delayed, queued.active, queued.completed) == (0, 0, 0, 0)
    assert not [k for k in left if any(f":{kind}:" in k for kind in ("slot", "pending", "idem"))]


async def test_without_redis_the_constraint_alone_prevents_double_booking(
    settings: Settings,
) -> None:
    """Redis unreachable: bookings work from Postgres alone; 30 concurrent attempts at
    one slot give one booking; availability is computed from Postgres."""
    url = _direct_url(settings)
    monday = next_weekday(MONDAY)
    no_redis = with_redis_url(settings, NO_REDIS_URL)
    statuses: list[int] = []
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        async with running_tree(no_redis) as client:

            async def one() -> None:
                statuses.append((await book(client, booking_body(local(monday, 15)))).status_code)

            async with trio.open_nursery() as nursery:
                for _ in range(30):
                    nursery.start_soon(one)
            shown = await client.get(
                "/v1/appointments/availability",
                params={
                    "type": "SHOWROOM",
                    "showroom_id": "leeds",
                    "from": str(monday),
                    "to": str(monday),
                },
            )
        rows = await fetch(url, "SELECT count(*) FROM appointments")
    assert sorted(statuses) == [201] + [409] * 29
    assert rows[0][0] == 1
    assert shown.status_code == 200
    starts = {(s["start"], s["consultant_id"]) for s in shown.json()["slots"]}
    assert (local(monday, 15), "grace-okafor") not in starts
    assert (local(monday, 14), "grace-okafor") in starts


async def test_a_full_mailbox_answers_503_overloaded(settings: Settings) -> None:
    """The SlotBooker's mailbox is bounded: past it, 503 with Retry-After, not a queue."""
    url = _direct_url(settings)
    monday = next_weekday(MONDAY)
    tight = dataclasses.replace(settings.booking, mailbox_capacity=1, batch_max=1, flushers=1)
    answers: list[httpx.Response] = []
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        slow = with_database_url(settings, via(proxy, url)).with_overrides(booking=tight)
        async with running_tree(slow) as client:
            await book(client, booking_body(local(monday, 9)))  # warm: roster loaded
            proxy.blackhole()  # every write now hangs until the connect timeout

            async def one(hour: int) -> None:
                answers.append(await book(client, booking_body(local(monday, hour))))

            async with trio.open_nursery() as nursery:
                for hour in range(10, 16):
                    nursery.start_soon(one, hour)
            proxy.forward()
    refused = [a for a in answers if a.status_code == 503]
    # Two handlers (batch_max 1 x (flushers 1 + 1)) and one place in the mailbox: the
    # other three are refused at the door.
    assert len(refused) >= 3
    assert {a.json()["error"]["code"] for a in refused} == {"overloaded"}
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
    assert all(a.status_code in (202, 503) for a in answers)


async def test_a_postgres_that_stalls_mid_query_gives_202_not_a_hang(settings: Settings) -> None:
    """Connections open but silent (a failover caught mid-flight): the call is abandoned
    at call_timeout_s, and the booking is held in Redis as 202 PENDING."""
    url = _direct_url(settings)
    monday = next_weekday(MONDAY)
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        stalling = with_database_url(settings, via(proxy, url))
        # The default timeouts (call 5 s, batch 6.5 s, the caller waits 7.5 s): the
        # caller hears 202 once the stalled call is abandoned, never "timeout" about a
        # booking that is then written.
        database = dataclasses.replace(
            stalling.database,
            call_timeout_s=DatabaseSettings().call_timeout_s,
            command_timeout_s=DatabaseSettings().command_timeout_s,
            statement_timeout_s=DatabaseSettings().statement_timeout_s,
        )
        async with running_tree(stalling.with_overrides(database=database)) as client:
            assert (await book(client, booking_body(local(monday, 9)))).status_code == 201
            proxy.freeze()
            with trio.fail_after(10):
                stalled = await book(client, booking_body(local(monday, 10)))
            proxy.forward()
            await eventually(lambda: _confirmed(client, stalled.json()), within_s=20)
    assert stalled.status_code == 202, stalled.text
