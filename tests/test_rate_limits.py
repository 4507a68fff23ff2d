"""Rate limits (GCRA on real Redis): exact under a virtual clock, shared across
processes, fail-open when Redis is down; over HTTP: 429 with ``Retry-After`` and
``RateLimit-*``, per address (``X-Forwarded-For`` only from trusted proxies) and per
account."""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio_asyncio
from structlog.testing import capture_logs

from adapters import RateLimiter, RedisCache, open_redis
from config import RateLimit, RateLimitSettings, RedisSettings, Settings, parse_rate
from gateway._auth import client_address
from tests._accounts import PASSWORD, bearer, customer, register
from tests._booking import (
    book,
    booking_body,
    local,
    next_weekday,
    prepare_database,
    redis_answers,
    running_tree,
)
from tests.conftest import NO_REDIS_URL

FIVE_PER_MINUTE = RateLimit(count=5, period_s=60.0, burst=5)  # one per 12 s after the burst


@asynccontextmanager
async def limiter_on_redis(
    redis_url: str, redis_prefix: str, clock: trio.testing.MockClock | None = None
) -> AsyncIterator[tuple[RateLimiter, RedisCache]]:
    settings = RedisSettings(url=redis_url, prefix=f"{redis_prefix}{secrets.token_hex(4)}:")
    async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=1.0) as cache:
        yield RateLimiter(cache, clock=None if clock is None else trio.current_time), cache


def test_limits_parse_from_their_written_form() -> None:
    assert parse_rate("10/60s") == RateLimit(10, 60.0, 10)
    assert parse_rate("5/15m burst=2") == RateLimit(5, 900.0, 2)
    assert parse_rate("100/1h").interval_s == 36.0
    for bad in ("10", "0/60s", "10/0s", "ten/60s", "10/60x", "10/60s burst=0"):
        with pytest.raises(ValueError, match="got"):
            parse_rate(bad)


async def test_a_burst_then_exactly_one_per_interval(
    redis_url: str, redis_prefix: str, mock_clock: trio.testing.MockClock
) -> None:
    """5 at once; the 6th waits 12 s exactly (Retry-After 12); at 11.999 s still
    refused, at 12 s one more, and then none again; after 60 s idle, the full burst."""
    async with limiter_on_redis(redis_url, redis_prefix, mock_clock) as (limiter, _):
        one = [("login_ip", "203.0.113.9", FIVE_PER_MINUTE)]
        burst = [await limiter.check(one) for _ in range(5)]
        refused = await limiter.check(one)
        mock_clock.jump(11.999)
        early = await limiter.check(one)
        mock_clock.jump(0.001)
        on_time = await limiter.check(one)
        again = await limiter.check(one)
        mock_clock.jump(60)
        rested = [await limiter.check(one) for _ in range(6)]
    assert [d.allowed for d in burst] == [True] * 5
    assert [d.remaining for d in burst] == [4, 3, 2, 1, 0]
    assert not refused.allowed
    assert refused.retry_after_s == 12.0
    assert refused.headers() == {
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "60",
        "RateLimit-Policy": "5;w=60",
    }
    assert not early.allowed
    assert early.retry_after_s == pytest.approx(0.001)
    assert on_time.allowed
    assert not again.allowed
    assert again.retry_after_s == 12.0
    assert [d.allowed for d in rested] == [True] * 5 + [False]


async def test_a_refusal_by_one_limit_takes_nothing_from_the_others(
    redis_url: str, redis_prefix: str, mock_clock: trio.testing.MockClock
) -> None:
    """The account's limit (2) refuses: the address's (5) is not charged for it."""
    async with limiter_on_redis(redis_url, redis_prefix, mock_clock) as (limiter, _):
        ip = ("booking_ip", "198.51.100.7", FIVE_PER_MINUTE)
        account = ("booking_account", "acct", RateLimit(2, 60.0, 2))
        both = [await limiter.check([ip, account]) for _ in range(4)]
        ip_alone = [await limiter.check([ip]) for _ in range(4)]
    assert [d.allowed for d in both] == [True, True, False, False]
    assert both[2].name == "booking_account"
    assert both[2].retry_after_s == 30.0
    assert both[1].name == "booking_account"  # the tighter one is reported
    assert [d.allowed for d in ip_alone] == [True, True, True, False]


def test_two_processes_share_one_limit_exactly(redis_url: str, redis_prefix: str) -> None:
    """Two processes, 30 attempts each at one limit of burst 20 (Redis's clock): 20
    allowed in all, however their calls interleave."""
    prefix = f"{redis_prefix}{secrets.token_hex(4)}:"
    command = [sys.executable, "-m", "tests._rate_worker", redis_url, prefix, "30"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    allowed = [int(w.communicate(timeout=60)[0].strip()) for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    assert sum(allowed) == 20


async def test_redis_down_fails_open_counted_and_logged_once(redis_prefix: str) -> None:
    """Every decision is allowed while Redis cannot be asked; counted each time; one
    warning for the outage."""
    settings = RedisSettings(url=NO_REDIS_URL, prefix=redis_prefix)
    async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=1.0) as cache:
        limiter = RateLimiter(cache)
        with capture_logs() as logs:
            decisions = [
                await limiter.check([("login_ip", "x", RateLimit(1, 60.0, 1))]) for _ in range(10)
            ]
    assert all(d.allowed and d.failed_open for d in decisions)
    assert limiter.fail_open == 10
    assert [e["event"] for e in logs if e["event"].startswith("rate_limits")] == [
        "rate_limits_fail_open"
    ]


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    alb = [ipaddress.ip_network("10.0.0.0/16")]
    # From the load balancer: the right-most address that is not a proxy.
    assert client_address("10.0.1.5", "198.51.100.7", alb) == "198.51.100.7"
    assert client_address("10.0.1.5", "6.6.6.6, 198.51.100.7, 10.0.2.9", alb) == "198.51.100.7"
    # From anyone else the header is the client's own say-so: ignored.
    assert client_address("203.0.113.9", "198.51.100.7", alb) == "203.0.113.9"
    assert client_address("203.0.113.9", "198.51.100.7", []) == "203.0.113.9"
    # A malformed chain: only the peer is believed.
    assert client_address("10.0.1.5", "not-an-ip", alb) == "10.0.1.5"
    assert client_address("10.0.1.5", "10.0.3.3", alb) == "10.0.3.3"  # all proxies


def limited(settings: Settings, **limits: str) -> Settings:
    """``settings`` with rate limits on (``limits`` as ``booking_ip="3/60s"``), the
    tests' client (127.0.0.1) a trusted proxy so X-Forwarded-For names the client."""
    rate_limits = RateLimitSettings(trusted_proxies=frozenset({"127.0.0.1/32"}))
    for name, limit in limits.items():
        rate_limits = dataclasses.replace(rate_limits, **{name: limit})  # type: ignore[arg-type]
    auth = dataclasses.replace(settings.auth, rate_limits=rate_limits)
    return dataclasses.replace(settings, auth=auth)


async def test_booking_route_answers_429_with_headers_per_address(settings: Settings) -> None:
    """The booking route: 3 per address; the 4th from that address is 429
    rate_limited with Retry-After and RateLimit-*; another address (through the
    trusted proxy) still books; a spoofed header from an untrusted peer would not help
    (tested above)."""
    assert settings.database.url is not None
    monday = next_weekday(0)
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(limited(settings, booking_ip="3/60s")) as client:
            await redis_answers(client)
            alice = {"X-Forwarded-For": "198.51.100.7"}
            answers = []
            for hour in (9, 10, 11, 12):
                client.headers.update(alice)
                answers.append(await book(client, booking_body(local(monday, hour))))
            client.headers.update({"X-Forwarded-For": "198.51.100.8"})
            other = await book(client, booking_body(local(monday, 13)))
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert answers[0].headers["RateLimit-Remaining"] == "2"
    refused = answers[3]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Policy"] == "3;w=60"
    assert other.status_code == 201


async def test_redis_down_rate_limited_routes_pass_everything(settings: Settings) -> None:
    """No Redis: limits of 1 per minute let every booking through, never a 5xx."""
    assert settings.database.url is not None
    monday = next_weekday(0)
    no_redis = dataclasses.replace(
        limited(settings, booking_ip="1/60s"),
        redis=dataclasses.replace(settings.redis, url=NO_REDIS_URL),
    )
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(no_redis) as client:
            answers = [await book(client, booking_body(local(monday, h))) for h in (9, 10, 11)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert all("RateLimit-Remaining" not in a.headers for a in answers)


async def test_login_brute_force_on_one_account_is_slowed_whatever_its_sources(
    settings: Settings,
) -> None:
    """3 guesses per minute per account: the 4th try on ada, from yet another address
    and even with the right password, is 429 (Retry-After 20 s); bob, and ada's own
    other routes, are untouched. Unknown addresses are limited the same way (the limit
    says nothing about whether an account exists)."""
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(limited(settings, login_account="3/60s")) as client:
            await redis_answers(client)
            await register(client, "ada@example.com")
            await register(client, "bob@example.com")

            async def attempt(email: str, n: int, password: str = "wrong guess!") -> int:
                headers = {"X-Forwarded-For": f"198.51.100.{n}"}
                body = {"email": email, "password": password}
                answer = await client.post("/v1/auth/login", json=body, headers=headers)
                return answer.status_code

            guesses = [await attempt("ada@example.com", n) for n in range(3)]
            blocked = await client.post(
                "/v1/auth/login",
                json={"email": "ADA@example.com", "password": PASSWORD},
                headers={"X-Forwarded-For": "203.0.113.50"},
            )
            bob = await attempt("bob@example.com", 60, PASSWORD)
            nobody = [await attempt("nobody@example.com", 70 + n) for n in range(4)]
    assert guesses == [401, 401, 401]
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"] == "20"
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert "account" in blocked.json()["error"]["message"]
    assert bob == 200
    assert nobody == [401, 401, 401, 429]


async def test_bookings_are_limited_per_account_across_addresses(settings: Settings) -> None:
    """Logged in, a customer's bookings count against the account whatever the address:
    the 3rd within the minute (limit 2) is 429; a guest from the same address is not."""
    assert settings.database.url is not None
    monday = next_weekday(0)
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(limited(settings, booking_account="2/60s")) as client:
            await redis_answers(client)
            ada = await customer(client, "ada@example.com")
            answers = []
            for n, hour in enumerate((9, 10, 11)):
                headers = {"X-Forwarded-For": f"198.51.100.{n}", **bearer(ada)}
                body = booking_body(local(monday, hour))
                key = {"Idempotency-Key": f"k{n}"}
                answers.append(
                    await client.post("/v1/appointments", json=body, headers={**headers, **key})
                )
            guest = await book(client, booking_body(local(monday, 12)))
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].headers["RateLimit-Policy"] == "2;w=60"
    assert guest.status_code == 201
