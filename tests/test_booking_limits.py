"""One customer cannot hold the calendar: a cap on active future bookings per e-mail
and per phone, decided in the booking transaction."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import trio
import trio_asyncio

from actors._booking_effects import notice
from adapters import Booked, LimitReached, NewBooking, OutboxJob, open_database
from adapters._appointments import book_batch
from config import DatabaseSettings, Settings
from tests._booking import (
    announced,
    book,
    booking_body,
    booking_settings,
    local,
    next_weekday,
    prepare_database,
    running_tree,
)
from tests.conftest import fetch
from tests.test_appointments_sql import START, booking

MONDAY = 0
CAP = 3


@pytest.fixture
def settings(fresh_database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    base = booking_settings(fresh_database_url, redis_url, redis_prefix)
    booking = dataclasses.replace(base.booking, max_active_per_customer=CAP)
    return dataclasses.replace(base, booking=booking)


def _starts(count: int) -> list[str]:
    monday = next_weekday(MONDAY)
    return [local(monday + timedelta(weeks=n // 8), 9 + n % 8) for n in range(count)]


def _customer(email: str, phone: str) -> dict[str, Any]:
    return {"name": "Mallory", "email": email, "phone": phone, "postcode": "LS1 6HD"}


async def test_past_the_cap_a_booking_is_409_by_email_or_by_phone(settings: Settings) -> None:
    """Three bookings for one customer; the fourth is 409 too_many_bookings whether it
    repeats the e-mail (other case) or the phone (other spacing); after a cancel the
    refused request's own key books (a refusal is not stored)."""
    assert settings.database.url is not None
    url = settings.database.url
    starts = _starts(6)
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        async with running_tree(settings) as client:
            with trio.fail_after(60):
                made = []
                for start in starts[:CAP]:
                    answer = await book(
                        client,
                        booking_body(start, customer=_customer("m@example.com", "+44 7700 900999")),
                    )
                    assert answer.status_code == 201, answer.text
                    made.append(answer.json())
                same_email = await book(
                    client,
                    booking_body(starts[3], customer=_customer("M@Example.com", "+44 7700 111111")),
                )
                key = uuid.uuid4().hex
                refused_body = booking_body(
                    starts[4], customer=_customer("other@example.com", "+447700900999")
                )
                same_phone = await book(client, refused_body, key)
                cancelled = await client.post(
                    f"/v1/appointments/{made[0]['id']}/cancel",
                    headers={"X-Manage-Token": made[0]["manage_token"]},
                )
                assert cancelled.status_code == 200
                retried = await book(client, refused_body, key)
        rows = await fetch(url, "SELECT count(*) FROM appointments WHERE status = 'CONFIRMED'")
    for refused in (same_email, same_phone):
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "too_many_bookings"
    assert retried.status_code == 201, retried.text
    assert rows[0][0] == CAP


async def test_concurrent_bookings_of_one_customer_stop_at_the_cap(settings: Settings) -> None:
    """Twenty bookings of distinct slots at once, one customer: exactly the cap are
    booked and confirmed in the outbox, the rest 409, nothing else kept."""
    assert settings.database.url is not None
    url = settings.database.url
    statuses: list[int] = []
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        async with running_tree(settings) as client:

            async def one(start: str) -> None:
                body = booking_body(start, customer=_customer("flood@example.com", "07700900123"))
                statuses.append((await book(client, body)).status_code)

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for start in _starts(20):
                        nursery.start_soon(one, start)
            jobs = await announced(settings)  # while the relay runs
        booked = await fetch(url, "SELECT count(*) FROM appointments")
        keys = await fetch(url, "SELECT count(*) FROM idempotency_keys")
    assert sorted(statuses) == [201] * CAP + [409] * (20 - CAP)
    assert booked[0][0] == CAP
    assert keys[0][0] == CAP
    assert [kind for kind, _ in jobs] == ["appointment.confirmed"] * CAP


def _confirmed(booking: NewBooking) -> OutboxJob:
    return notice("appointment.confirmed", booking.id)


def _render(booking: NewBooking, outcome: object) -> tuple[int, str]:
    return 201, "{}"


async def test_a_batch_waits_for_a_concurrent_batch_of_the_same_customer(
    fresh_database_url: str,
) -> None:
    """Another transaction holds the customer's lock: a batch for that customer waits
    for it (no count taken meanwhile), then sees its booking and stops at the cap."""
    url = fresh_database_url
    first = booking(START)
    second = booking(START + timedelta(hours=1))
    second = dataclasses.replace(second, customer_email="ADA@example.com")  # same customer
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        holder = await trio_asyncio.aio_as_trio(asyncpg.connect)(url)
        try:
            held = trio_asyncio.aio_as_trio(holder.execute)
            await held(
                "SELECT pg_advisory_lock(4201, hashtext('email:' || lower($1)))",
                first.customer_email,
            )
            settings = DatabaseSettings(url=url)
            async with open_database(settings, application="t", cleanup_s=1.0) as db:
                outcomes: list[object] = []

                async def book_second() -> None:
                    [outcome] = await db.run(
                        book_batch([second], _render, _confirmed, max_active_per_customer=1)
                    )
                    outcomes.append(outcome)

                with trio.fail_after(20):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(book_second)
                        await _waiting_on_an_advisory_lock(url)
                        assert outcomes == []
                        # The holder books the customer's first (its own lock is
                        # re-entrant), commits, and lets go.
                        operation = book_batch(
                            [first], _render, _confirmed, max_active_per_customer=1
                        )
                        [mine] = await trio_asyncio.aio_as_trio(operation)(holder)
                        await held("SELECT pg_advisory_unlock_all()")
        finally:
            await trio_asyncio.aio_as_trio(holder.close)()
    assert mine == Booked("grace-okafor")
    assert outcomes == [LimitReached()]


async def _waiting_on_an_advisory_lock(url: str) -> None:
    # Postgres offers no notification for "a backend started waiting": poll its view
    # (bounded by the caller's fail_after).
    while not await fetch(  # noqa: ASYNC110
        url,
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND wait_event = 'advisory' AND datname = current_database()",
    ):
        await trio.sleep(0.02)


async def test_a_refused_booking_takes_no_slot_from_another_customer(
    settings: Settings,
) -> None:
    """A customer at the cap and another customer want the same slot at once, ten
    times over: the other customer ends up with every slot. (Its first try may meet
    the refused booking's Redis lock, a fast 409 that is not stored; its retry with
    the same key books. The refused booking was once inserted and then deleted: the
    other's database refusal was stored under its key, and its retry got it again.)"""
    assert settings.database.url is not None
    starts = _starts(CAP + 10)
    results: list[tuple[str, int]] = []
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            with trio.fail_after(60):
                full = _customer("full@example.com", "+44 7700 900001")
                for start in starts[:CAP]:
                    made = await book(client, booking_body(start, customer=full))
                    assert made.status_code == 201
                for n, start in enumerate(starts[CAP:]):
                    other = _customer(f"other{n}@example.com", f"+44 7700 91000{n}")
                    refused = trio.Event()

                    async def greedy(at: str = start, done: trio.Event = refused) -> None:
                        answer = await book(client, booking_body(at, customer=full))
                        results.append(("full", answer.status_code))
                        done.set()

                    async def genuine(
                        at: str = start, who: dict[str, Any] = other, done: trio.Event = refused
                    ) -> None:
                        key = uuid.uuid4().hex
                        answer = await book(client, booking_body(at, customer=who), key)
                        if answer.status_code == 409:  # met the refused one's lock
                            await done.wait()  # its answer came after its lock went
                            answer = await book(client, booking_body(at, customer=who), key)
                        results.append(("other", answer.status_code))

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(greedy)
                        nursery.start_soon(genuine)
    assert sorted(results) == sorted([("full", 409), ("other", 201)] * 10)


def test_postgres_decides_what_is_the_same_address() -> None:
    """The cap's e-mail key is lower-cased by Postgres in SQL, for the lock and the
    count alike (Python's lower() differs for some letters, e.g. 'İ')."""
    from adapters._customer_cap import _ACTIVE_BY_CUSTOMER, _LOCK_CUSTOMERS

    assert "lower(e)" in _LOCK_CUSTOMERS
    assert "'email:' || lower(e)" in _ACTIVE_BY_CUSTOMER


_HISTORY = """
INSERT INTO appointments (id, reference, type, category, status, consultant_id, showroom_id,
    starts_at, ends_at, customer_name, customer_email, customer_phone, customer_postcode,
    manage_token_hash)
SELECT gen_random_uuid(), 'LW-T-' || $3::text || n, 'SHOWROOM', 'KITCHEN', $4::text,
    'grace-okafor', 'leeds', now() + n * $5::interval, now() + n * $5::interval + interval '1 hour',
    'Customer ' || n, 'c' || $3::text || n || '@example.com', '+44 7' || lpad(n::text, 9, '0'),
    'LS1 1AA', '\\x00'::bytea
FROM generate_series($1::int, $2::int) AS n
"""


async def test_the_cap_counts_through_the_customers_index_whatever_the_statistics(
    settings: Settings,
) -> None:
    """The count is a lookup of one customer's bookings, never a walk over every active
    one: analyzed with a long history and nothing ahead, then given thousands of
    bookings ahead (the statistics now wrong), its plan reads the customer indexes and
    no index (or scan) over all the active bookings."""
    from adapters._customer_cap import _ACTIVE_BY_CUSTOMER

    url = settings.database.url
    assert url is not None
    emails = [f"someone{n}@example.com" for n in range(45)]
    phones = [f"4477009{n:05d}" for n in range(45)]
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        await fetch(url, _HISTORY, 1, 20_000, "h", "COMPLETED", timedelta(hours=-2))
        await fetch(url, "ANALYZE appointments")
        await fetch(url, _HISTORY, 1, 3_000, "f", "CONFIRMED", timedelta(hours=2))
        plan = "\n".join(
            row[0] for row in await fetch(url, f"EXPLAIN {_ACTIVE_BY_CUSTOMER}", emails, phones)
        )
    assert "appointments_by_email_starts" in plan
    assert "appointments_by_phone_starts" in plan
    for everyone in ("appointments_active_starts", "appointments_no_double_booking", "Seq Scan"):
        assert everyone not in plan, plan
