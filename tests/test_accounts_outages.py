"""Accounts through outages (spec: "auth-service sessions in Redis remain valid" during
an RDS failover; "Session verification falls back to JWT expiry-only check" and "Rate
limiting temporarily disabled (fail-open)" during an ElastiCache failover).

Postgres or Redis is taken away through a loopback proxy that resets every
connection, as a failover looks to the service."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import trio_asyncio

from chaos import open_proxy
from config import RateLimitSettings, Settings
from tests._accounts import bearer, customer, login, register
from tests._booking import (
    booking_body,
    eventually,
    local,
    next_weekday,
    prepare_database,
    redis_answers,
    running_tree,
)
from tests._service import with_database_url, with_redis_url
from tests.conftest import REDIS_PORT, port_of
from tests.test_postgres import via

MONDAY = 0


async def _book(
    client: httpx.AsyncClient, tokens: dict[str, Any], hour: int, key: str
) -> httpx.Response:
    body = booking_body(local(next_weekday(MONDAY), hour))
    headers = {"Idempotency-Key": key, **bearer(tokens)}
    return await client.post("/v1/appointments", json=body, headers=headers)


async def test_postgres_down_sessions_keep_working_login_waits(settings: Settings) -> None:
    """Postgres cut: a logged-in customer keeps /v1/me, refreshes, books (202 PENDING,
    theirs: they read it with their access token); a new login or registration is 503
    with Retry-After. Back: login works, the booking is CONFIRMED and listed as theirs."""
    assert settings.database.url is not None
    url = settings.database.url
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        async with running_tree(with_database_url(settings, via(proxy, url))) as client:
            await redis_answers(client)
            ada = await customer(client, "ada@example.com")
            warm = await _book(client, ada, 9, "warm")  # the roster is read while Postgres is up
            proxy.reset()
            me = await client.get("/v1/me", headers=bearer(ada))
            refreshed = await client.post(
                "/v1/auth/refresh", json={"refresh_token": ada["refresh_token"]}
            )
            fresh = refreshed.json()
            booked = await _book(client, fresh, 10, "pg-down")
            theirs = await client.get(
                f"/v1/appointments/{booked.json()['id']}", headers=bearer(fresh)
            )
            login_down = await login(client, "ada@example.com")
            register_down = await register(client, "bob@example.com")
            proxy.forward()

            async def logged_in() -> httpx.Response | None:
                answer = await login(client, "ada@example.com")
                return answer if answer.status_code == 200 else None

            back = await eventually(logged_in, within_s=20)

            async def confirmed() -> list[dict[str, Any]] | None:
                mine = await client.get("/v1/me/appointments", headers=bearer(back.json()))
                rows: list[dict[str, Any]] = mine.json().get("appointments", [])
                return rows if [r["status"] for r in rows] == ["CONFIRMED"] * 2 else None

            listed = await eventually(confirmed, within_s=20)
    assert warm.status_code == 201
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"
    assert refreshed.status_code == 200
    assert booked.status_code == 202, booked.text
    assert theirs.status_code == 200
    assert theirs.json()["status"] == "PENDING"
    assert login_down.status_code == 503
    assert int(login_down.headers["Retry-After"]) >= 1
    assert register_down.status_code == 503
    assert "Retry-After" in register_down.headers
    assert [r["id"] for r in listed] == [booked.json()["id"], warm.json()["id"]]


async def test_redis_down_tokens_by_expiry_only_limits_open_then_revocation_again(
    settings: Settings,
) -> None:
    """Redis cut: a logged-out session's token is accepted (expiry only: at most 15
    min), live ones too; login still works (a token of no session, no refresh token),
    rate limits let everything through; refresh is 503 (it needs Redis); nothing else
    is a 5xx. Back: the revoked token is refused again."""
    assert settings.database.url is not None
    tight = dataclasses.replace(
        settings.auth,
        rate_limits=RateLimitSettings(login_account="2/60s", booking_account="1/60s"),
    )
    async with trio_asyncio.open_loop(), open_proxy(REDIS_PORT) as proxy:
        await prepare_database(settings.database.url)
        redis_url = f"redis://127.0.0.1:{proxy.port}/0"
        cut = with_redis_url(dataclasses.replace(settings, auth=tight), redis_url)
        async with running_tree(cut) as client:
            await redis_answers(client)
            revoked = await customer(client, "ada@example.com")
            live = (await login(client, "ada@example.com")).json()
            assert (
                await client.post("/v1/auth/logout", headers=bearer(revoked))
            ).status_code == 204
            refused_before = await client.get("/v1/me", headers=bearer(revoked))
            proxy.reset()
            during = {
                "revoked": await client.get("/v1/me", headers=bearer(revoked)),
                "live": await client.get("/v1/me", headers=bearer(live)),
            }
            logins = [await login(client, "ada@example.com") for _ in range(4)]
            sessionless = logins[0].json()
            during["sessionless"] = await client.get("/v1/me", headers=bearer(sessionless))
            bookings = [await _book(client, live, hour, f"r{hour}") for hour in (9, 10, 11)]
            refresh = await client.post(
                "/v1/auth/refresh", json={"refresh_token": live["refresh_token"]}
            )
            proxy.forward()

            async def refused_again() -> bool:
                answer = await client.get("/v1/me", headers=bearer(revoked))
                return answer.status_code == 401

            await eventually(refused_again, within_s=20)
            after_live = await client.get("/v1/me", headers=bearer(live))
            after_sessionless = await client.get("/v1/me", headers=bearer(sessionless))
    assert refused_before.status_code == 401
    assert {name: a.status_code for name, a in during.items()} == {
        "revoked": 200,
        "live": 200,
        "sessionless": 200,
    }
    assert [a.status_code for a in logins] == [200] * 4  # over the per-account limit of 2
    assert sessionless["refresh_token"] is None
    assert [a.status_code for a in bookings] == [201] * 3  # over the limit of 1
    assert refresh.status_code == 503
    assert "Retry-After" in refresh.headers
    assert after_live.status_code == 200
    assert after_sessionless.status_code == 200  # no session to revoke: lives to expiry
