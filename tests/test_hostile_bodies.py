"""Odd bodies and headers on the booking routes: clear 4xx codes, never a 500, and
private answers that no cache keeps."""

from __future__ import annotations

import json
import uuid

import trio
import trio_asyncio

from config import Settings
from tests._booking import (
    book,
    booking_body,
    local,
    next_weekday,
    prepare_database,
    running_tree,
)

MONDAY = 0
JSON = {"Content-Type": "application/json"}


async def test_invalid_utf8_duplicate_keys_and_foreign_charsets_are_refused(
    settings: Settings,
) -> None:
    """Invalid UTF-8 inside a JSON string is 400 malformed_json on booking, cancel and
    reschedule (it was a 500 with a traceback); a key given twice is 422
    duplicate_field; a declared non-UTF-8 charset is 415; nothing is booked."""
    assert settings.database.url is not None
    monday = next_weekday(MONDAY)
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            with trio.fail_after(30):
                made = (await book(client, booking_body(local(monday, 10)))).json()
                token = {"X-Manage-Token": made["manage_token"], **JSON}
                base = f"/v1/appointments/{made['id']}"
                key = {"Idempotency-Key": uuid.uuid4().hex, **JSON}
                answers = {
                    "book utf8": await client.post(
                        "/v1/appointments",
                        content=b'{"type": "ONLINE", "notes": "A\xff"}',
                        headers=key,
                    ),
                    "cancel utf8": await client.post(
                        f"{base}/cancel", content=b'{"reason": "A\xff"}', headers=token
                    ),
                    "reschedule utf8": await client.post(
                        f"{base}/reschedule", content=b'{"start": "\xff"}', headers=token
                    ),
                    "book duplicate": await client.post(
                        "/v1/appointments",
                        content=json.dumps(booking_body(local(monday, 12)))[:-1].encode()
                        + b', "notes": "first", "notes": "second"}',
                        headers=key,
                    ),
                    "cancel duplicate": await client.post(
                        f"{base}/cancel",
                        content=b'{"reason": "a", "reason": "b"}',
                        headers=token,
                    ),
                    "book latin-1": await client.post(
                        "/v1/appointments",
                        content=b"{}",
                        headers={**key, "Content-Type": "application/json; charset=latin-1"},
                    ),
                    "cancel latin-1": await client.post(
                        f"{base}/cancel",
                        content=b"{}",
                        headers={**token, "Content-Type": "application/json; charset=iso-8859-1"},
                    ),
                }
                still = await client.get(base, headers=token)
    seen = {name: (a.status_code, a.json()["error"]["code"]) for name, a in answers.items()}
    assert seen == {
        "book utf8": (400, "malformed_json"),
        "cancel utf8": (400, "malformed_json"),
        "reschedule utf8": (400, "malformed_json"),
        "book duplicate": (422, "duplicate_field"),
        "cancel duplicate": (422, "duplicate_field"),
        "book latin-1": (415, "unsupported_media_type"),
        "cancel latin-1": (415, "unsupported_media_type"),
    }
    assert still.json()["status"] == "CONFIRMED"


async def test_answers_with_personal_data_or_a_token_are_no_store(settings: Settings) -> None:
    """The booking (with its manage token), its replay, the lookup and the cancel are
    Cache-Control: no-store; availability (public) is not."""
    assert settings.database.url is not None
    monday = next_weekday(MONDAY)
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            with trio.fail_after(30):
                key = uuid.uuid4().hex
                made = await book(client, booking_body(local(monday, 11)), key)
                replayed = await book(client, booking_body(local(monday, 11)), key)
                token = {"X-Manage-Token": made.json()["manage_token"]}
                shown = await client.get(f"/v1/appointments/{made.json()['id']}", headers=token)
                cancelled = await client.post(
                    f"/v1/appointments/{made.json()['id']}/cancel", headers=token
                )
                public = await client.get(
                    "/v1/appointments/availability",
                    params={"type": "ONLINE", "from": str(monday), "to": str(monday)},
                )
    for private in (made, replayed, shown, cancelled):
        assert private.status_code in (200, 201)
        assert private.headers["cache-control"] == "no-store"
    assert public.status_code == 200
    assert "cache-control" not in public.headers
