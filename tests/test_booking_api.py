"""Booking over HTTP on the real tree: availability, booking, idempotency, manage token,
cancel and reschedule, notifications in the outbox, and every kind of bad input."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
import trio
import trio_asyncio

from actors import LONDON
from adapters import PostgresBookingStore, open_database
from config import Settings
from tests._booking import (
    NIGHT_OWL,
    announced,
    book,
    booking_body,
    local,
    next_weekday,
    prepare_database,
    running_tree,
)
from tests.conftest import fetch

MONDAY = 0


async def _prepared(settings: Settings, *extra: str) -> str:
    assert settings.database.url is not None
    await prepare_database(settings.database.url, *extra)
    return settings.database.url


async def test_availability_lists_free_slots_in_london_time(settings: Settings) -> None:
    """Leeds showroom, one Monday: Grace (KITCHEN+BEDROOM) and Daniel (BEDROOM), 09-17."""
    async with trio_asyncio.open_loop():
        await _prepared(settings)
        monday = next_weekday(MONDAY)
        async with running_tree(settings) as client:
            response = await client.get(
                "/v1/appointments/availability",
                params={
                    "type": "SHOWROOM",
                    "showroom_id": "leeds",
                    "from": str(monday),
                    "to": str(monday),
                },
            )
            kitchen = await client.get(
                "/v1/appointments/availability",
                params={
                    "type": "SHOWROOM",
                    "showroom_id": "leeds",
                    "category": "KITCHEN",
                    "from": str(monday),
                    "to": str(monday),
                },
            )
    assert response.status_code == 200
    slots = response.json()["slots"]
    assert len(slots) == 16  # 8 hours x 2 consultants
    assert set(slots[0]) == {"start", "end", "consultant_id", "showroom_id"}
    assert slots[0]["start"] == local(monday, 9)
    assert slots[-1]["end"] == local(monday, 17)
    assert {s["consultant_id"] for s in kitchen.json()["slots"]} == {"grace-okafor"}


def _last_sunday(year: int, month: int) -> date:
    """The last Sunday of ``month``: the UK's clocks change then (March, October)."""
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - 6) % 7)


def _coming_change(month: int) -> date:
    """The next clock change in ``month`` at least eight days from today."""
    soon = datetime.now(LONDON).date() + timedelta(days=8)
    change = _last_sunday(soon.year, month)
    return change if change >= soon else _last_sunday(soon.year + 1, month)


SPRING, AUTUMN = _coming_change(3), _coming_change(10)


@pytest.mark.parametrize(
    ("sunday", "expected"),
    [
        # Clocks go forward at 01:00 GMT: 00:00-03:00 local is two hours long.
        (SPRING, [f"{SPRING}T00:00:00+00:00", f"{SPRING}T02:00:00+01:00"]),
        # Clocks go back at 02:00 BST: 01:00-02:00 happens twice; four slots.
        (
            AUTUMN,
            [
                f"{AUTUMN}T00:00:00+01:00",
                f"{AUTUMN}T01:00:00+01:00",
                f"{AUTUMN}T01:00:00+00:00",
                f"{AUTUMN}T02:00:00+00:00",
            ],
        ),
        # An ordinary Sunday (the week before spring's): three slots, all GMT.
        (
            SPRING - timedelta(weeks=1),
            [f"{SPRING - timedelta(weeks=1)}T0{h}:00:00+00:00" for h in range(3)],
        ),
    ],
    ids=["spring-forward", "fall-back", "ordinary"],
)
async def test_availability_is_right_across_the_clock_changes(
    settings: Settings, sunday: date, expected: list[str]
) -> None:
    """The night-owl's 00:00-03:00 on the coming clock-change Sundays: 2 slots in
    spring, 4 in autumn (01:00 twice), 3 on an ordinary Sunday; the last is bookable."""
    async with trio_asyncio.open_loop():
        await _prepared(settings, *NIGHT_OWL)
        booking = settings.booking
        far = (sunday - datetime.now().date()).days + 7
        settings = settings.with_overrides(booking=dataclasses.replace(booking, horizon_days=far))
        async with running_tree(settings) as client:
            response = await client.get(
                "/v1/appointments/availability",
                params={"type": "ONLINE", "from": str(sunday), "to": str(sunday)},
            )
            owl = [s for s in response.json()["slots"] if s["consultant_id"] == "night-owl"]
            # The first night slot of a spring-forward day is bookable as listed.
            booked = await book(
                client,
                booking_body(
                    owl[-1]["start"], type="ONLINE", consultant_id="night-owl", showroom_id=None
                ),
            )
    assert [s["start"] for s in owl] == expected
    assert all(s["showroom_id"] is None for s in owl)
    assert booked.status_code == 201, booked.text
    assert booked.json()["start"] == expected[-1]


async def test_a_booking_is_confirmed_readable_and_announced(settings: Settings) -> None:
    """201 with id, reference, manage token; GET with the token; a notification job
    waits in the outbox; the slot leaves availability at once."""
    async with trio_asyncio.open_loop():
        url = await _prepared(settings)
        monday = next_weekday(MONDAY)
        async with running_tree(settings) as client:
            created = await book(client, booking_body(local(monday, 10)))
            body = created.json()
            shown = await client.get(
                f"/v1/appointments/{body['id']}", headers={"X-Manage-Token": body["manage_token"]}
            )
            bearer = await client.get(
                f"/v1/appointments/{body['id']}",
                headers={"Authorization": f"Bearer {body['manage_token']}"},
            )
            free = await client.get(
                "/v1/appointments/availability",
                params={
                    "type": "SHOWROOM",
                    "showroom_id": "leeds",
                    "from": str(monday),
                    "to": str(monday),
                },
            )
            jobs = await announced(settings)
        rows = await fetch(url, "SELECT status, consultant_id FROM appointments")
    assert created.status_code == 201, created.text
    assert body["status"] == "CONFIRMED"
    assert body["reference"].startswith("LW-")
    assert len(body["reference"]) == 12
    assert body["start"] == local(monday, 10)
    assert body["end"] == local(monday, 11)
    assert shown.status_code == 200
    assert shown.json()["status"] == "CONFIRMED"
    assert "manage_token" not in shown.json()
    assert bearer.status_code == 200
    assert [(r[0], r[1]) for r in rows] == [("CONFIRMED", "grace-okafor")]
    assert jobs == [("appointment.confirmed", {"appointment_id": body["id"]})]
    taken = [s for s in free.json()["slots"] if s["start"] == local(monday, 10)]
    assert [s["consultant_id"] for s in taken] == ["daniel-price"]


async def test_without_a_consultant_any_free_one_is_chosen(settings: Settings) -> None:
    """ONLINE KITCHEN at one hour: as many bookings succeed as consultants work then."""
    async with trio_asyncio.open_loop():
        await _prepared(settings)
        monday = next_weekday(MONDAY)
        body = booking_body(local(monday, 11), type="ONLINE", showroom_id=None, consultant_id=None)
        async with running_tree(settings) as client:
            answers = [await book(client, body) for _ in range(6)]
    # Kitchen consultants working Monday 11:00: amira, tom, grace, sofia, owen.
    statuses = [a.status_code for a in answers]
    assert statuses == [201] * 5 + [409]
    chosen = {a.json()["consultant_id"] for a in answers[:5]}
    assert chosen == {"amira-khan", "tom-hughes", "grace-okafor", "sofia-rossi", "owen-evans"}
    assert answers[5].json()["error"]["code"] == "slot_taken"


async def test_idempotency_key_replays_the_first_response(settings: Settings) -> None:
    """Same key and body: the first response again, byte for byte for a 201; a 409 is
    the same refusal carrying its own request's id (the error shape of every route)."""
    async with trio_asyncio.open_loop():
        url = await _prepared(settings)
        monday = next_weekday(MONDAY)
        async with running_tree(settings) as client:
            first = await book(client, booking_body(local(monday, 9)), key="key-1")
            again = await book(client, booking_body(local(monday, 9)), key="key-1")
            lost = await book(client, booking_body(local(monday, 9)), key="key-2")
            lost_again = await book(client, booking_body(local(monday, 9)), key="key-2")
            changed = await book(client, booking_body(local(monday, 12)), key="key-1")
            # The slot frees up. A refusal by the slot lock was not stored (nothing was
            # attempted, as Stripe does for conflicts): the same key may now book.
            await client.post(
                f"/v1/appointments/{first.json()['id']}/cancel",
                headers={"X-Manage-Token": first.json()["manage_token"]},
            )
            lost_later = await book(client, booking_body(local(monday, 9)), key="key-2")
            fresh = await book(client, booking_body(local(monday, 9)), key="key-3")
        rows = await fetch(url, "SELECT count(*) FROM appointments")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert (lost.status_code, lost_again.status_code) == (409, 409)
    for refused in (lost, lost_again):
        assert refused.json()["error"]["request_id"] == refused.headers["X-Request-ID"]
    assert lost.headers["X-Request-ID"] != lost_again.headers["X-Request-ID"]
    assert {**lost_again.json()["error"], "request_id": ""} == {
        **lost.json()["error"],
        "request_id": "",
    }
    assert lost_later.status_code == 201
    assert fresh.status_code == 409
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert rows[0][0] == 2  # the first (cancelled since) and the refused key's retry


async def test_concurrent_duplicates_share_one_booking(settings: Settings) -> None:
    """Twenty requests with one key at once: one booking, twenty identical answers."""
    async with trio_asyncio.open_loop():
        url = await _prepared(settings)
        monday = next_weekday(MONDAY)
        answers: list[httpx.Response] = []
        async with running_tree(settings) as client:

            async def one() -> None:
                answers.append(await book(client, booking_body(local(monday, 14)), key="dup"))

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
        rows = await fetch(url, "SELECT count(*) FROM appointments")
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert rows[0][0] == 1


async def test_fifty_concurrent_attempts_at_one_slot_give_one_booking(settings: Settings) -> None:
    """Fifty requests for one slot at once: one 201, forty-nine 409 slot_taken, one row."""
    async with trio_asyncio.open_loop():
        url = await _prepared(settings)
        monday = next_weekday(MONDAY)
        statuses: list[int] = []
        async with running_tree(settings) as client:

            async def one() -> None:
                statuses.append((await book(client, booking_body(local(monday, 15)))).status_code)

            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(one)
        rows = await fetch(url, "SELECT count(*) FROM appointments")
    assert sorted(statuses) == [201] + [409] * 49
    assert rows[0][0] == 1


async def test_the_manage_token_guards_every_route_without_leaking(settings: Settings) -> None:
    """No token: 401. Wrong token, unknown id, malformed id: the same 404."""
    async with trio_asyncio.open_loop():
        await _prepared(settings)
        monday = next_weekday(MONDAY)
        async with running_tree(settings) as client:
            body = (await book(client, booking_body(local(monday, 10)))).json()
            path = f"/v1/appointments/{body['id']}"
            no_token = await client.get(path)
            wrong = await client.get(path, headers={"X-Manage-Token": "guess"})
            unknown = await client.get(
                f"/v1/appointments/{uuid.uuid4()}", headers={"X-Manage-Token": "guess"}
            )
            malformed = await client.get(
                "/v1/appointments/not-a-uuid", headers={"X-Manage-Token": "guess"}
            )
            cancel_wrong = await client.post(f"{path}/cancel", headers={"X-Manage-Token": "guess"})
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "unauthorized"
    for response in (wrong, unknown, malformed, cancel_wrong):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert response.json()["error"]["message"] == "no such appointment"


async def test_cancel_and_reschedule_free_the_slot_and_notify(settings: Settings) -> None:
    """Cancel and reschedule free the old slot in availability and each queue a notification."""
    async with trio_asyncio.open_loop():
        await _prepared(settings)
        monday = next_weekday(MONDAY)
        async with running_tree(settings) as client:
            first = (await book(client, booking_body(local(monday, 10)))).json()
            token = {"X-Manage-Token": first["manage_token"]}
            path = f"/v1/appointments/{first['id']}"
            moved = await client.post(
                f"{path}/reschedule", json={"start": local(monday, 13)}, headers=token
            )
            # The old slot is free again at once (lock and cache released).
            retaken = await book(client, booking_body(local(monday, 10)))
            blocked = await client.post(
                f"{path}/reschedule", json={"start": local(monday, 10)}, headers=token
            )
            cancelled = await client.post(
                f"{path}/cancel", json={"reason": "changed my mind"}, headers=token
            )
            cancelled_again = await client.post(f"{path}/cancel", headers=token)
            not_movable = await client.post(
                f"{path}/reschedule", json={"start": local(monday, 16)}, headers=token
            )
            rebooked = await book(client, booking_body(local(monday, 13)))
            kinds = [kind for kind, _ in await announced(settings)]
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "RESCHEDULED"
    assert moved.json()["start"] == local(monday, 13)
    assert moved.json()["previous_start"] == local(monday, 10)
    assert retaken.status_code == 201
    assert blocked.status_code == 409
    assert blocked.json()["error"]["code"] == "slot_taken"
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    assert cancelled.json()["status_reason"] == "changed my mind"
    assert cancelled_again.status_code == 200
    assert not_movable.status_code == 409
    assert not_movable.json()["error"]["code"] == "not_reschedulable"
    assert rebooked.status_code == 201
    assert kinds == [
        "appointment.confirmed",
        "appointment.rescheduled",
        "appointment.confirmed",
        "appointment.cancelled",
        "appointment.confirmed",
    ]


CUSTOMER = booking_body("")["customer"]


def _bad_bodies(monday: date) -> list[tuple[str, Any, int, str, str | None]]:
    """(name, body, status, code, field)."""
    home = booking_body(local(monday, 10), type="HOME_MEASUREMENT", showroom_id=None)
    return [
        (
            "unknown type",
            booking_body(local(monday, 10), type="GARAGE"),
            422,
            "invalid_field",
            "type",
        ),
        (
            "unknown category",
            booking_body(local(monday, 10), category="BATHROOM"),
            422,
            "invalid_field",
            "category",
        ),
        (
            "slot in the past",
            booking_body(local(next_weekday(MONDAY, weeks_ahead=-5), 10)),
            422,
            "slot_in_past",
            "start",
        ),
        (
            "slot off the grid",
            booking_body(local(monday, 10).replace(":00:00", ":30:00")),
            422,
            "slot_off_grid",
            "start",
        ),
        ("no UTC offset", booking_body(local(monday, 10)[:19]), 422, "invalid_field", "start"),
        ("not a date", booking_body("next tuesday"), 422, "invalid_field", "start"),
        ("year 1", booking_body("0001-01-01T00:00:00+01:00"), 422, "invalid_field", "start"),
        ("year 9999", booking_body("9999-12-31T23:00:00-05:00"), 422, "invalid_field", "start"),
        (
            "NUL in a name",
            booking_body(local(monday, 10), customer={**CUSTOMER, "name": "Ada\u0000"}),
            422,
            "invalid_field",
            "customer.name",
        ),
        (
            "control character in notes",
            booking_body(local(monday, 10), notes="hi\u001b[31m"),
            422,
            "invalid_field",
            "notes",
        ),
        ("home visit without address", home, 422, "missing_field", "customer.address"),
        (
            "showroom without id",
            booking_body(local(monday, 10), showroom_id=None),
            422,
            "missing_field",
            "showroom_id",
        ),
        (
            "unknown showroom",
            booking_body(local(monday, 10), showroom_id="paris"),
            422,
            "unknown_showroom",
            "showroom_id",
        ),
        (
            "unknown consultant",
            booking_body(local(monday, 10), consultant_id="nobody"),
            422,
            "unknown_consultant",
            "consultant_id",
        ),
        (
            "consultant not working then",
            booking_body(local(monday, 7)),
            422,
            "slot_unavailable",
            "start",
        ),
        (
            "bad email",
            booking_body(
                local(monday, 10),
                customer={**booking_body("")["customer"], "email": "ada-at-example"},
            ),
            422,
            "invalid_field",
            "customer.email",
        ),
        (
            "bad postcode",
            booking_body(
                local(monday, 10), customer={**booking_body("")["customer"], "postcode": "12345"}
            ),
            422,
            "invalid_field",
            "customer.postcode",
        ),
        (
            "missing customer",
            {k: v for k, v in booking_body(local(monday, 10)).items() if k != "customer"},
            422,
            "invalid_field",
            "customer",
        ),
        ("unknown field", booking_body(local(monday, 10), price=0), 422, "invalid_field", "price"),
        ("not an object", [1, 2], 422, "invalid_field", None),
    ]


async def test_bad_input_gets_a_clear_4xx_naming_the_field(settings: Settings) -> None:
    """Each kind of bad booking input is a 4xx with a stable code and the field, never a 500."""
    async with trio_asyncio.open_loop():
        url = await _prepared(settings)
        monday = next_weekday(MONDAY)
        cases = _bad_bodies(monday)
        async with running_tree(settings) as client:
            answers = [await book(client, body) for _, body, *_ in cases]
            malformed = await client.post(
                "/v1/appointments",
                content=b'{"type": "SHOWROOM",',
                headers={"Idempotency-Key": "m", "Content-Type": "application/json"},
            )
            no_key = await client.post("/v1/appointments", json=booking_body(local(monday, 10)))
            oversized = await client.post(
                "/v1/appointments",
                json=booking_body(local(monday, 10), notes="x" * 10_000),
                headers={"Idempotency-Key": "big"},
            )
            bad_range = await client.get(
                "/v1/appointments/availability",
                params={
                    "type": "ONLINE",
                    "from": str(monday + timedelta(days=9)),
                    "to": str(monday),
                },
            )
            long_range = await client.get(
                "/v1/appointments/availability",
                params={
                    "type": "ONLINE",
                    "from": str(monday),
                    "to": str(monday + timedelta(days=151)),
                },
            )
            no_type = await client.get("/v1/appointments/availability")
            far = await client.get(
                "/v1/appointments/availability", params={"type": "ONLINE", "from": "9999-12-30"}
            )
        rows = await fetch(url, "SELECT count(*) FROM appointments")
    for (name, _, status, code, field), answer in zip(cases, answers, strict=True):
        error = answer.json()["error"]
        assert (answer.status_code, error["code"]) == (status, code), (name, answer.text)
        assert error.get("field") == field, (name, answer.text)
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "malformed_json")
    assert no_key.status_code == 400
    assert no_key.json()["error"]["code"] == "idempotency_key_required"
    assert oversized.status_code == 413
    assert (bad_range.status_code, bad_range.json()["error"]["field"]) == (422, "to")
    assert long_range.json()["error"]["code"] == "range_too_long"
    assert (no_type.status_code, no_type.json()["error"]["field"]) == (422, "type")
    assert (far.status_code, far.json()["error"]["field"]) == (422, "from")
    assert rows[0][0] == 0


async def test_idempotency_keys_are_kept_48_hours_then_trimmed(settings: Settings) -> None:
    """The trimmer forgets keys older than idempotency_keep_s (48 h), not younger ones."""
    async with trio_asyncio.open_loop():
        url = await _prepared(settings)
        for key, age_h in (("old", 49), ("day-old", 25), ("new", 0)):
            await fetch(
                url,
                "INSERT INTO idempotency_keys (key, request_hash, status, response, created_at)"
                " VALUES ($1, '\\x00', 201, '{}', now() - make_interval(hours => $2))",
                key,
                age_h,
            )
        async with open_database(settings.database, application="t", cleanup_s=1.0) as db:
            keep_s = settings.booking.idempotency_keep_s
            removed = await PostgresBookingStore(db).forget_keys(keep_s)
        left = await fetch(url, "SELECT key FROM idempotency_keys ORDER BY key")
    assert removed == 1
    assert [r[0] for r in left] == ["day-old", "new"]


async def test_a_retry_gets_its_answer_while_another_request_holds_the_slot_lock(
    settings: Settings,
) -> None:
    """Every answer is stored in Redis after the commit: a retry whose slot lock is
    held by someone else (a later attempt in flight) still gets its 201, not a 409.
    And a request that lost in Postgres releases its lock at once (no false 409s)."""
    monday = next_weekday(MONDAY)
    start = local(monday, 10)
    lock = (
        f"{settings.redis.prefix}slot:grace-okafor:{int(datetime.fromisoformat(start).timestamp())}"
    )
    client_redis = redis.Redis.from_url(settings.redis.url or "")
    try:
        async with trio_asyncio.open_loop():
            await _prepared(settings)
            async with running_tree(settings) as client:
                first = await book(client, booking_body(start), key="mine")
                client_redis.set(lock, "appointments:someone-else", px=60_000)
                retried = await book(client, booking_body(start), key="mine")
                # The lock expires; a loser in Postgres must not keep it.
                client_redis.delete(lock)
                loser = await book(client, booking_body(start), key="theirs")
                left = client_redis.get(lock)
    finally:
        client_redis.close()
    assert first.status_code == 201
    assert retried.content == first.content
    assert loser.status_code == 409
    assert left is None


async def test_a_reschedule_respects_a_slot_held_in_redis(settings: Settings) -> None:
    """A slot held for a pending booking (or locked by a booking in flight) is not
    free for a reschedule either: 409, and the booking stays where it was."""
    monday = next_weekday(MONDAY)
    held = local(monday, 16)
    epoch = int(datetime.fromisoformat(held).timestamp())
    client_redis = redis.Redis.from_url(settings.redis.url or "")
    try:
        async with trio_asyncio.open_loop():
            await _prepared(settings)
            async with running_tree(settings) as client:
                first = (await book(client, booking_body(local(monday, 10)))).json()
                lock = f"{settings.redis.prefix}slot:grace-okafor:{epoch}"
                client_redis.set(lock, "appointments:pending-one", px=60_000)
                moved = await client.post(
                    f"/v1/appointments/{first['id']}/reschedule",
                    json={"start": held},
                    headers={"X-Manage-Token": first["manage_token"]},
                )
                shown = await client.get(
                    f"/v1/appointments/{first['id']}",
                    headers={"X-Manage-Token": first["manage_token"]},
                )
    finally:
        client_redis.close()
    assert moved.status_code == 409
    assert moved.json()["error"]["code"] == "slot_taken"
    assert shown.json()["start"] == local(monday, 10)


async def test_the_manage_token_is_stored_nowhere(settings: Settings) -> None:
    """Neither the idempotency record in Postgres nor the answer in Redis holds the
    token; a replay of the key still returns it, byte for byte; it opens the booking."""
    monday = next_weekday(MONDAY)
    client_redis = redis.Redis.from_url(settings.redis.url or "")
    try:
        async with trio_asyncio.open_loop():
            url = await _prepared(settings)
            async with running_tree(settings) as client:
                first = await book(client, booking_body(local(monday, 10)), key="k")
                again = await book(client, booking_body(local(monday, 10)), key="k")
            stored = await fetch(url, "SELECT response FROM idempotency_keys")
        cached = client_redis.get(f"{settings.redis.prefix}idem:appointments:k")
    finally:
        client_redis.close()
    token = first.json()["manage_token"]
    assert len(token) == 32
    assert again.content == first.content
    assert token not in stored[0][0]
    assert cached is not None
    assert token.encode() not in cached


async def test_a_held_slot_is_never_an_any_consultant_fallback(settings: Settings) -> None:
    """An "any consultant" booking whose locked candidate is taken in Postgres falls
    back only to candidates nobody holds in Redis: a slot held for a pending booking
    (or in flight) is left alone, even with Postgres saying it is free."""
    monday = next_weekday(MONDAY)
    start = local(monday, 11)
    epoch = int(datetime.fromisoformat(start).timestamp())
    online = {"type": "ONLINE", "showroom_id": None}
    client_redis = redis.Redis.from_url(settings.redis.url or "")
    try:
        async with trio_asyncio.open_loop():
            url = await _prepared(settings)
            async with running_tree(settings) as client:
                taken = await book(
                    client, booking_body(start, consultant_id="amira-khan", **online)
                )
                # amira's lock expires (as after lock_s); every other consultant's slot
                # is held in Redis (pending bookings, in-flight attempts).
                client_redis.delete(f"{settings.redis.prefix}slot:amira-khan:{epoch}")
                for other in ("tom-hughes", "grace-okafor", "sofia-rossi", "owen-evans"):
                    key = f"{settings.redis.prefix}slot:{other}:{epoch}"
                    client_redis.set(key, "appointments:held", px=60_000)
                anyone = await book(client, booking_body(start, consultant_id=None, **online))
            rows = await fetch(url, "SELECT consultant_id FROM appointments")
    finally:
        client_redis.close()
    assert taken.status_code == 201
    assert anyone.status_code == 409
    assert [r[0] for r in rows] == ["amira-khan"]
