"""One customer cannot hold the calendar: a cap on active future bookings per e-mail
and per phone, decided in the booking transaction."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio_asyncio

from config import Settings
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
        booked = await fetch(url, "SELECT count(*) FROM appointments")
        keys = await fetch(url, "SELECT count(*) FROM idempotency_keys")
        jobs = await announced(settings)
    assert sorted(statuses) == [201] * CAP + [409] * (20 - CAP)
    assert booked[0][0] == CAP
    assert keys[0][0] == CAP
    assert [kind for kind, _ in jobs] == ["appointment.confirmed"] * CAP
