"""Availability takes only validated, bounded values into its cache keys, and lists
only slots that booking accepts."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

import pytest
import redis
import trio
import trio_asyncio

from actors import LONDON
from config import Settings
from tests._booking import book, booking_body, prepare_database, running_tree
from tests.conftest import REDIS_URL


def _keys(settings: Settings) -> set[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return set(client.scan_iter(match=f"{settings.redis.prefix}*", count=1000))
    finally:
        client.close()


@pytest.mark.parametrize(
    "showroom_id",
    [secrets.token_urlsafe(6000)[:8000], "nowhere", "leeds\x00", "lee ds"],
    ids=["8000-chars", "unknown", "nul", "space"],
)
async def test_an_unknown_or_odd_showroom_is_422_before_any_cache_work(
    settings: Settings, showroom_id: str
) -> None:
    """showroom_id that is no showroom: 422 unknown_showroom, and Redis gets no key
    (it once got ~62 keys per request, each holding the 8,000 characters)."""
    today = datetime.now(LONDON).date()
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            with trio.fail_after(30):
                warm = await client.get(
                    "/v1/appointments/availability",
                    params={"type": "SHOWROOM", "showroom_id": "leeds", "from": str(today)},
                )
                assert warm.status_code == 200
                before = _keys(settings)
                for kind in ("SHOWROOM", "ONLINE"):
                    answer = await client.get(
                        "/v1/appointments/availability",
                        params={
                            "type": kind,
                            "showroom_id": showroom_id,
                            "from": str(today),
                            "to": str(today + timedelta(days=30)),
                        },
                    )
                    assert answer.status_code == 422
                    assert answer.json()["error"]["code"] == "unknown_showroom"
                after = _keys(settings)
    assert after == before


async def test_the_last_slot_availability_lists_is_one_booking_accepts(
    settings: Settings,
) -> None:
    """On the horizon's last day availability lists only slots within the horizon, so
    booking the last slot listed succeeds (no slot_too_far for a listed slot)."""
    horizon = settings.booking.horizon_days
    now = datetime.now(UTC)
    last_day: date = (now + timedelta(days=horizon)).astimezone(LONDON).date()
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            with trio.fail_after(30):
                listed = await client.get(
                    "/v1/appointments/availability",
                    params={
                        "type": "ONLINE",
                        "from": str(last_day - timedelta(days=6)),
                        "to": str(last_day),
                    },
                )
                slots = listed.json()["slots"]
                assert slots, "the week before the horizon has open slots"
                latest = max(slots, key=lambda s: datetime.fromisoformat(s["start"]))
                assert datetime.fromisoformat(latest["start"]) <= datetime.now(UTC) + timedelta(
                    days=horizon
                )
                made = await book(
                    client,
                    booking_body(
                        latest["start"],
                        type="ONLINE",
                        showroom_id=None,
                        consultant_id=latest["consultant_id"],
                    ),
                )
    assert made.status_code == 201, made.text
