"""Accounts over HTTP on the whole tree (real Postgres, Redis): register, login,
refresh with rotation and theft detection, logout, ``/v1/me``; bookings belong to
the account that made them and no other customer sees them; bad input is a 4xx."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from actors import Passwords
from config import AuthSettings, Settings
from tests._accounts import PASSWORD, bearer, customer, login, register
from tests._booking import (
    book,
    booking_body,
    local,
    next_weekday,
    prepare_database,
    redis_answers,
    running_tree,
)
from tests.conftest import fetch

MONDAY = 0


def with_auth(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, auth=dataclasses.replace(settings.auth, **changes))


async def test_register_login_me_and_logout(settings: Settings) -> None:
    """201 with the account (the address as given, unique whatever its case or Unicode
    form); login gives a 15-minute Bearer token and a refresh token; /v1/me answers
    from the token; after logout the access token is refused (session_revoked)."""
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            await redis_answers(client)
            created = await register(client, "Zoë.Lovelace@Bücher.Example", name="Zoë")
            taken = await register(client, "ZOË.LOVELACE@xn--bcher-kva.example")
            decomposed = await register(client, "zoe\u0308.lovelace@bücher.example")
            tokens = await login(client, "zoë.lovelace@BÜCHER.example")
            me = await client.get("/v1/me", headers=bearer(tokens.json()))
            out = await client.post("/v1/auth/logout", headers=bearer(tokens.json()))
            after = await client.get("/v1/me", headers=bearer(tokens.json()))
            refresh_after = await client.post(
                "/v1/auth/refresh", json={"refresh_token": tokens.json()["refresh_token"]}
            )
        rows = await fetch(
            settings.database.url, "SELECT email, email_key, password_hash FROM accounts"
        )
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["email"] == "Zoë.Lovelace@Bücher.Example"
    assert account["name"] == "Zoë"
    assert created.headers["Cache-Control"] == "no-store"
    assert [taken.status_code, decomposed.status_code] == [409, 409]
    assert taken.json()["error"]["code"] == "email_taken"
    assert tokens.status_code == 200
    body = tokens.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"].startswith(account["id"] + ".")
    assert me.status_code == 200
    assert me.json() == {
        "id": account["id"],
        "email": account["email"],
        "name": "Zoë",
        "phone": "+44 7700 900123",
    }
    assert out.status_code == 204
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_revoked"
    assert after.headers["WWW-Authenticate"].startswith("Bearer")
    assert refresh_after.status_code == 401
    [(email, key, password_hash)] = [tuple(r) for r in rows]
    assert email == "Zoë.Lovelace@Bücher.Example"
    assert key == "zoë.lovelace@xn--bcher-kva.example"
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(settings: Settings) -> None:
    """Each refresh gives a new refresh token and uses the old one up. The old one
    again within the overlap (two tabs) gets another token; later it is theft: the
    whole session ends (its newest tokens too), while another session lives on."""
    assert settings.database.url is not None
    overlap = with_auth(settings, refresh_reuse_overlap_s=0.5)
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(overlap) as client:
            await redis_answers(client)

            async def refresh(token: str) -> httpx.Response:
                return await client.post("/v1/auth/refresh", json={"refresh_token": token})

            first = await customer(client, "ada@example.com")
            other_session = (await login(client, "ada@example.com")).json()
            second = await refresh(first["refresh_token"])
            twin = await refresh(first["refresh_token"])  # within the overlap
            third = await refresh(second.json()["refresh_token"])
            await trio.sleep(0.7)
            stolen = await refresh(first["refresh_token"])  # replayed after the overlap
            newest = await refresh(third.json()["refresh_token"])
            me_newest = await client.get("/v1/me", headers=bearer(third.json()))
            me_other = await client.get("/v1/me", headers=bearer(other_session))
            garbage = await refresh("not-a-token")
            unknown = await refresh(f"{uuid.uuid4()}.nothing")
    assert [second.status_code, twin.status_code, third.status_code] == [200, 200, 200]
    tokens = {first["refresh_token"], second.json()["refresh_token"], twin.json()["refresh_token"]}
    assert len(tokens) == 3  # every answer is a new token
    assert stolen.status_code == 401
    assert stolen.json()["error"]["code"] == "invalid_token"
    assert newest.status_code == 401  # the family is gone
    assert me_newest.status_code == 401
    assert me_other.status_code == 200  # another login's session is untouched
    assert [garbage.status_code, unknown.status_code] == [401, 401]


async def test_bookings_belong_to_their_account_and_no_one_else(settings: Settings) -> None:
    """Logged in, a booking is the account's: its owner reads, cancels and lists it with
    the access token alone; another customer gets 404 on every id route (the same as
    an unknown id) and never sees it listed; a guest or another account using the
    same Idempotency-Key makes a booking of its own, never gets this one's answer."""
    assert settings.database.url is not None
    monday = next_weekday(MONDAY)
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            await redis_answers(client)
            ada = await customer(client, "ada@example.com")
            bob = await customer(client, "bob@example.com")
            body = booking_body(local(monday, 9))
            mine = await client.post(
                "/v1/appointments", json=body, headers={"Idempotency-Key": "k1", **bearer(ada)}
            )
            again = await client.post(
                "/v1/appointments", json=body, headers={"Idempotency-Key": "k1", **bearer(ada)}
            )
            guest_same_key = await book(client, booking_body(local(monday, 10)), key="k1")
            bob_same_key = await client.post(
                "/v1/appointments",
                json=booking_body(local(monday, 11)),
                headers={"Idempotency-Key": "k1", **bearer(bob)},
            )
            booking = mine.json()["id"]
            owner_reads = await client.get(f"/v1/appointments/{booking}", headers=bearer(ada))
            path = f"/v1/appointments/{booking}"
            unknown = f"/v1/appointments/{uuid.uuid4()}"
            start = local(monday, 14)
            stranger = {
                "read": await client.get(path, headers=bearer(bob)),
                "cancel": await client.post(f"{path}/cancel", headers=bearer(bob)),
                "reschedule": await client.post(
                    f"{path}/reschedule", json={"start": start}, headers=bearer(bob)
                ),
                "unknown": await client.get(unknown, headers=bearer(bob)),
            }
            lists = {
                "ada": await client.get("/v1/me/appointments", headers=bearer(ada)),
                "bob": await client.get("/v1/me/appointments", headers=bearer(bob)),
            }
            owner_moves = await client.post(
                f"{path}/reschedule", json={"start": start}, headers=bearer(ada)
            )
            owner_cancels = await client.post(f"{path}/cancel", headers=bearer(ada))
            guest_token_still_works = await client.get(
                path, headers={"X-Manage-Token": mine.json()["manage_token"]}
            )
            bad_token = await client.get(path, headers={"Authorization": "Bearer a.b.c"})
        rows = await fetch(
            settings.database.url, "SELECT account_id::text FROM appointments ORDER BY starts_at"
        )
    assert mine.status_code == 201
    assert again.status_code == 201
    assert again.json()["id"] == booking
    assert guest_same_key.status_code == 201
    assert guest_same_key.json()["id"] != booking
    assert bob_same_key.status_code == 201
    assert bob_same_key.json()["id"] != booking
    assert owner_reads.status_code == 200
    assert owner_reads.json()["id"] == booking
    for name, answer in stranger.items():
        assert answer.status_code == 404, name
        assert answer.json()["error"]["code"] == "not_found", name
    assert [a["id"] for a in lists["ada"].json()["appointments"]] == [booking]
    assert [a["id"] for a in lists["bob"].json()["appointments"]] == [bob_same_key.json()["id"]]
    assert owner_moves.status_code == 200
    assert owner_cancels.status_code == 200
    assert owner_cancels.json()["status"] == "CANCELLED"
    assert guest_token_still_works.status_code == 200
    assert bad_token.status_code == 401
    ids = {row[0] for row in rows}
    assert ids == {ada_id(ada), ada_id(bob), None}


def ada_id(tokens: dict[str, Any]) -> str:
    return str(tokens["refresh_token"]).partition(".")[0]


async def test_login_failures_say_nothing_about_the_address(settings: Settings) -> None:
    """An unknown address and a wrong password: the same status, code and message."""
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            await redis_answers(client)
            await register(client, "ada@example.com")
            wrong = await login(client, "ada@example.com", password="not the password")
            nobody = await login(client, "nobody@example.com", password="not the password")
    assert wrong.status_code == nobody.status_code == 401
    assert without_request_id(wrong) == without_request_id(nobody)
    assert without_request_id(wrong)["code"] == "invalid_credentials"


def without_request_id(answer: httpx.Response) -> dict[str, Any]:
    return {k: v for k, v in answer.json()["error"].items() if k != "request_id"}


class CountingPasswords(Passwords):
    def __init__(self, settings: AuthSettings) -> None:
        super().__init__(settings)
        self.runs = 0

    async def hash(self, password: str) -> str:
        self.runs += 1
        return await super().hash(password)

    async def _check(self, password_hash: str, password: str) -> bool:
        self.runs += 1
        return await super()._check(password_hash, password)


async def test_an_unknown_address_costs_one_argon2_run_like_a_wrong_password() -> None:
    """The time of a login tells nothing: both paths run argon2 exactly once."""
    passwords = CountingPasswords(AuthSettings())
    stored = await passwords.hash(PASSWORD)
    passwords.runs = 0
    assert not await passwords.verify(stored, "wrong password")
    assert passwords.runs == 1
    for _ in range(2):  # the first makes the dummy hash, the next verify against it
        passwords.runs = 0
        assert not await passwords.verify(None, PASSWORD)
        assert passwords.runs == 1
    assert await passwords.verify(stored, PASSWORD)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"password": PASSWORD, "name": "A"}, 422, "invalid_field", "email"),
        ({"email": "a@example.com", "name": "A"}, 422, "invalid_field", "password"),
        ({"email": "a@example.com", "password": PASSWORD}, 422, "invalid_field", "name"),
        ({"email": "nope", "password": PASSWORD, "name": "A"}, 422, "invalid_field", "email"),
        (
            {"email": "a@example.com", "password": "short", "name": "A"},
            422,
            "password_too_short",
            "password",
        ),
        (
            {"email": "a@example.com", "password": "x1" * 100, "name": "A"},
            422,
            "password_too_long",
            "password",
        ),
        (
            {"email": "a@example.com", "password": "é" * 5000, "name": "A"},
            413,
            "payload_too_large",
            None,
        ),
        (
            {"email": "a@example.com", "password": "y" * 1025, "name": "A"},
            422,
            "invalid_field",
            "password",
        ),
        (
            {"email": "tester@example.com", "password": "Tester@Example.com", "name": "A"},
            422,
            "password_is_email",
            "password",
        ),
        (
            {"email": "a@example.com", "password": "1234567890", "name": "A"},
            422,
            "password_too_common",
            "password",
        ),
        (
            {"email": "a@" + "x" * 64 + ".example", "password": PASSWORD, "name": "A"},
            422,
            "invalid_field",
            "email",
        ),
        (
            {"email": "a@example.com", "password": PASSWORD, "name": "A", "role": "admin"},
            422,
            "invalid_field",
            "role",
        ),
        (
            {"email": "a@example.com", "password": 1234567890, "name": "A"},
            422,
            "invalid_field",
            "password",
        ),
    ],
)
async def test_register_refuses_bad_input_clearly(
    settings: Settings, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        roomy = dataclasses.replace(settings, max_body_bytes=4096)
        async with running_tree(roomy) as client:
            answer = await client.post("/v1/auth/register", json=body)
            count = await fetch(settings.database.url, "SELECT count(*) FROM accounts")
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert error.get("field") == field
    assert count[0][0] == 0


async def test_login_and_refresh_refuse_bad_input_clearly(settings: Settings) -> None:
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            await redis_answers(client)
            no_password = await client.post("/v1/auth/login", json={"email": "a@example.com"})
            too_long = await login(client, "a@example.com", password="p" * 500)
            not_json = await client.post(
                "/v1/auth/login", content=b"email=a", headers={"Content-Type": "text/plain"}
            )
            no_token = await client.post("/v1/auth/refresh", json={})
            me_anonymous = await client.get("/v1/me")
            me_manage_token = await client.get("/v1/me", headers={"Authorization": "Bearer abc"})
            logout_anonymous = await client.post("/v1/auth/logout")
    assert (no_password.status_code, no_password.json()["error"]["field"]) == (422, "password")
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (422, "password_too_long")
    assert not_json.status_code == 415
    assert (no_token.status_code, no_token.json()["error"]["field"]) == (422, "refresh_token")
    assert [me_anonymous.status_code, me_manage_token.status_code] == [401, 401]
    assert logout_anonymous.status_code == 401
