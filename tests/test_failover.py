"""Real failovers under the running service (chaos/_clusters.py), not a proxy.

Postgres: a primary and a streaming replica behind a multi-host URL
(``target_session_attrs=read-write``) plus the replica's own URL. The primary stops
(an immediate shutdown): reads go on from the replica, bookings are held as 202
PENDING, /health says the database is down; the replica is promoted and, with no
restart of the service, bookings are written (201) again well inside the spec's 30 s
reconnect window and every pending one is replayed to CONFIRMED.

Redis: a primary, a replica and three Sentinels behind a ``redis+sentinel://`` URL.
The primary is SIGKILLed: the service answers on (Postgres alone keeps slots single),
/health says Redis is degraded; once the Sentinels elect the replica, /health says ok
again, with no restart, and the locks and sessions in Redis work.

Each test prints what it measured (the write gap, the Redis recovery time). Skipped
only where the PostgreSQL or Redis binaries are missing.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from adapters import Connection, open_database
from adapters._postgres import _host_urls
from chaos import Mode, open_proxy
from chaos._clusters import (
    find_postgres_bin,
    find_redis_server,
    postgres_pair,
    redis_sentinel_group,
)
from config import DatabaseSettings
from supervisors import ConnectionLost, LomashError
from tests._accounts import customer
from tests._booking import book, booking_body, eventually, local, next_weekday, prepare_database
from tests.conftest import fetch
from tests.test_process import service

BOUND_S = 60.0  # every test, start to end
RECONNECT_WINDOW_S = 30.0  # the spec: a recovered database is used again within 30 s
OUTAGE_S = 4.0  # how long the Postgres primary is gone before the replica is promoted


_CUSTOMERS = itertools.count(secrets.randbelow(50_000))


def _slots() -> Iterator[str]:
    """Distinct working hours of grace-okafor (Mon-Fri 09:00-17:00), two weeks on."""
    for weeks_ahead in (2, 3, 4):
        for weekday in range(5):
            day = next_weekday(weekday, weeks_ahead=weeks_ahead)
            for hour in range(9, 17):
                yield local(day, hour)


def _body(start: str) -> dict[str, Any]:
    """A booking by a customer of its own (the per-customer cap stays out of the way)."""
    who = next(_CUSTOMERS)
    base = booking_body(start)["customer"]
    mine = {"email": f"c{who:05d}@example.com", "phone": f"+44 7700 9{who:05d}"}
    return booking_body(start, customer={**base, **mine})


async def _status(client: httpx.AsyncClient, booking: dict[str, Any]) -> str:
    shown = await client.get(
        f"/v1/appointments/{booking['id']}", headers={"X-Manage-Token": booking["manage_token"]}
    )
    assert shown.status_code == 200, shown.text
    status: str = shown.json()["status"]
    return status


async def _health(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    answer = await client.get("/health")
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


def _need(binary: object, what: str) -> None:
    if binary is None:
        pytest.skip(f"{what} not installed: real failovers need its binaries")


async def test_a_promoted_replica_takes_the_writes_without_a_restart(
    redis_url: str, redis_prefix: str
) -> None:
    """Primary stopped: reads 200 from the replica, bookings 202 PENDING (never 5xx),
    /health 503 naming the database; replica promoted: 201 again within the
    reconnect window, every 202 of the gap CONFIRMED."""
    _need(find_postgres_bin(), "PostgreSQL")
    slots = _slots()
    with trio.fail_after(BOUND_S):
        async with trio_asyncio.open_loop(), postgres_pair(synchronous=True) as pair:
            url = await pair.create_database("lomash")
            environment = {
                "LOMASH_DATABASE_URL": url,
                "LOMASH_DATABASE_REPLICA_URL": pair.replica_url_for("lomash"),
                "LOMASH_DATABASE_CONNECT_TIMEOUT_S": "1",
                "LOMASH_REDIS_URL": redis_url,
                "LOMASH_REDIS_PREFIX": f"{redis_prefix}{secrets.token_hex(4)}:",
                "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
                "LOMASH_BOOKING_REPLAY_RETRY_S": "0.5",
            }
            async with (
                service(environment, test_routes=False) as running,
                httpx.AsyncClient(base_url=running.url, timeout=20.0) as client,
            ):
                monday = next_weekday(0)
                day = {"type": "SHOWROOM", "showroom_id": "leeds", "from": str(monday)}
                before = await book(client, _body(next(slots)))
                assert before.status_code == 201, before.text
                assert (await _health(client))[0] == 200

                await pair.stop_primary()
                stopped_at = trio.current_time()
                showrooms = await client.get("/v1/showrooms")
                availability = await client.get(
                    "/v1/appointments/availability", params={**day, "to": str(monday)}
                )
                pending = [await book(client, _body(next(slots))) for _ in range(3)]
                health_status, health = await _health(client)
                # An outage of a few seconds: the service's probes back off meanwhile.
                while trio.current_time() - stopped_at < OUTAGE_S:
                    pending.append(await book(client, _body(next(slots))))
                    await trio.sleep(0.5)

                promote_s = await pair.promote()
                promoted_at = trio.current_time()
                # Without a restart: keep booking until one is written again.
                during: list[httpx.Response] = []
                while True:
                    answer = await book(client, _body(next(slots)))
                    if answer.status_code == 201:
                        break
                    during.append(answer)
                    assert trio.current_time() - promoted_at < RECONNECT_WINDOW_S, answer.text
                    await trio.sleep(0.2)
                written_at = trio.current_time()
                after_showrooms = await client.get("/v1/showrooms")
                gap = [*pending, *during]
                for held in gap:
                    await eventually(
                        lambda held=held: _is(client, held.json(), "CONFIRMED"), within_s=20
                    )
                health_after = await eventually(lambda: _healthy(client), within_s=10)
            rows = await fetch(pair.url_for("lomash"), "SELECT id::text, status FROM appointments")
    print(
        f"\npostgres failover: write gap {written_at - stopped_at:.2f} s from stop to the"
        f" first 201 (promotion took {promote_s:.2f} s, first 201"
        f" {written_at - promoted_at:.2f} s after it), {len(gap)} bookings held as 202"
    )
    assert showrooms.status_code == 200, showrooms.text
    assert len(showrooms.json()["showrooms"]) == 3
    assert availability.status_code == 200, availability.text
    assert [p.status_code for p in pending] == [202] * len(pending), [p.text for p in pending]
    assert {p.json()["status"] for p in pending} == {"PENDING"}
    assert {a.status_code for a in during} <= {202}, [a.text for a in during]
    assert health_status == 503
    assert health["status"] == "unhealthy"
    assert health["checks"]["database"].startswith("error"), health
    assert written_at - promoted_at < RECONNECT_WINDOW_S
    assert after_showrooms.status_code == 200
    assert health_after["checks"] == {"database": "ok", "redis": "ok"}
    statuses = dict((r[0], r[1]) for r in rows)
    for held in [before, *gap, answer]:
        assert statuses[held.json()["id"]] == "CONFIRMED"


async def _is(client: httpx.AsyncClient, booking: dict[str, Any], status: str) -> bool:
    return await _status(client, booking) == status


async def _healthy(client: httpx.AsyncClient) -> dict[str, Any] | None:
    code, body = await _health(client)
    return body if code == 200 and body["status"] == "healthy" else None


async def _server_port(connection: Connection) -> int:
    port: int = await connection.fetchval("SELECT inet_server_port()")
    return port


def test_a_multi_host_url_is_split_into_one_url_per_host() -> None:
    """What each host of a multi-host URL is tried with: the same user, database and
    options; a single-host URL is left alone."""
    url = "postgresql://u:p%40ss@10.0.0.1:5432,[::1]:6432/lomash?target_session_attrs=read-write"
    assert _host_urls(url) == [
        "postgresql://u:p%40ss@10.0.0.1:5432/lomash?target_session_attrs=read-write",
        "postgresql://u:p%40ss@[::1]:6432/lomash?target_session_attrs=read-write",
    ]
    assert _host_urls("postgresql://u@db:5432/lomash") == ["postgresql://u@db:5432/lomash"]


@pytest.mark.parametrize("silence", ["blackholed", "frozen"])
async def test_a_silent_old_primary_does_not_hide_the_promoted_standby(silence: str) -> None:
    """The multi-host URL's first host stops answering altogether (a vanished
    machine: connections hang instead of being refused; "frozen": the open ones
    hang too) and the standby is promoted: writes reach it within a few connect
    timeouts. (asyncpg alone tries the hosts in order under one timeout, which the
    silent host used up every time: the promoted standby was never reached.)"""
    _need(find_postgres_bin(), "PostgreSQL")
    with trio.fail_after(BOUND_S):
        async with (
            trio_asyncio.open_loop(),
            postgres_pair(synchronous=True) as pair,
            open_proxy(pair.primary_port) as proxy,
        ):
            hosts = f"127.0.0.1:{proxy.port},127.0.0.1:{pair.replica_port}"
            url = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"
            settings = DatabaseSettings(
                url=url,
                connect_timeout_s=1.0,
                call_timeout_s=2.0,
                slow_call_s=0.5,
                statement_timeout_s=1.0,
                command_timeout_s=1.5,
                reconnect_min_s=0.05,
                reconnect_max_s=0.4,
            )
            async with open_database(settings, application="tests", cleanup_s=2.0) as database:
                before = await database.run(_server_port)
                # The machine vanishes (silent before the server is gone: the proxy
                # does not survive an upstream that refuses it).
                if silence == "frozen":
                    proxy.freeze()
                    proxy.mode = Mode.BLACKHOLE  # and new connections never answered
                else:
                    proxy.blackhole()
                await pair.stop_primary()
                await pair.promote()
                promoted_at = trio.current_time()

                async def written() -> int | None:
                    with contextlib.suppress(LomashError):
                        return await database.run(_server_port, idempotent=True)
                    return None

                after = await eventually(written, within_s=RECONNECT_WINDOW_S, every_s=0.1)
                took = trio.current_time() - promoted_at
    print(f"\n{silence} old primary: the promoted standby written {took:.2f} s after promotion")
    assert (before, after) == (pair.primary_port, pair.replica_port)
    assert took < 10.0


async def test_standbys_only_is_an_outage_of_the_primary_not_an_error() -> None:
    """Every host answers, none takes writes (the middle of a switchover): the
    primary is down (ConnectionLost, so bookings wait as 202), not a database error
    (which asyncpg's "no host matches" would have become: a 500)."""
    _need(find_postgres_bin(), "PostgreSQL")
    with trio.fail_after(BOUND_S):
        async with trio_asyncio.open_loop(), postgres_pair() as pair:
            replica = f"127.0.0.1:{pair.replica_port}"
            url = f"postgresql://postgres@{replica},{replica}/postgres?target_session_attrs=read-write"
            settings = DatabaseSettings(url=url, connect_timeout_s=1.0)
            async with open_database(settings, application="tests", cleanup_s=2.0) as database:
                with pytest.raises(ConnectionLost) as lost:
                    await database.run(_server_port)
    assert "no host takes writes" in lost.value.message


async def test_sentinels_electing_a_new_redis_primary_is_followed_without_a_restart(
    fresh_database_url: str, redis_prefix: str
) -> None:
    """Primary SIGKILLed: bookings go on from Postgres alone (a contested slot is a
    409, never a 5xx), /health says Redis degraded; the Sentinels promote the replica:
    /health says ok again without a restart, a contested slot is refused by its Redis
    lock, and a login and a refresh (sessions in Redis) work."""
    _need(find_redis_server(), "redis-server")
    slots = _slots()
    with trio.fail_after(BOUND_S):
        async with trio_asyncio.open_loop(), redis_sentinel_group() as group:
            await prepare_database(fresh_database_url)
            prefix = f"{redis_prefix}{secrets.token_hex(4)}:"
            environment = {
                "LOMASH_DATABASE_URL": fresh_database_url,
                "LOMASH_REDIS_URL": group.url,
                "LOMASH_REDIS_PREFIX": prefix,
                "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
                "LOMASH_REDIS_RECONNECT_MAX_S": "1",
            }
            async with (
                service(environment, test_routes=False) as running,
                httpx.AsyncClient(base_url=running.url, timeout=20.0) as client,
            ):
                await eventually(lambda: _redis_is_ok(client), within_s=10)
                first = await _contest(client, next(slots))

                await group.kill_primary()
                killed_at = trio.current_time()
                degraded = await eventually(lambda: _redis_is_down(client), within_s=10)
                noticed_at = trio.current_time()
                during = [await _contest(client, next(slots)) for _ in range(2)]

                elected_s = await group.wait_promoted()
                elected_at = trio.current_time()
                answers_during_election: list[int] = []

                async def redis_ok_again() -> bool:
                    answers_during_election.append(
                        (await book(client, _body(next(slots)))).status_code
                    )
                    return await _redis_is_ok(client)

                await eventually(redis_ok_again, within_s=RECONNECT_WINDOW_S, every_s=0.2)
                recovered_at = trio.current_time()
                after = await _contest(client, next(slots))
                keys = await group.command("KEYS", f"{prefix}*")
                tokens = await customer(client, f"r{secrets.token_hex(4)}@example.com")
                refreshed = await client.post(
                    "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
                )
                alive = running.process.returncode is None
    print(
        f"\nredis sentinel failover: degraded {noticed_at - killed_at:.2f} s after the"
        f" kill, master elected after {elected_s:.2f} s, /health redis ok"
        f" {recovered_at - killed_at:.2f} s after the kill"
        f" ({recovered_at - elected_at:.2f} s after the election)"
    )
    assert first == [201] + [409] * 4
    assert degraded["status"] == "degraded"
    assert degraded["checks"]["database"] == "ok"
    for statuses in during:  # Postgres alone: one booking per slot, no 5xx
        assert statuses == [201] + [409] * 4, statuses
    assert all(s < 500 for s in answers_during_election), answers_during_election
    assert after == [201] + [409] * 4
    assert isinstance(keys, list)
    assert any(f"{prefix}idem:" in str(k) for k in keys), keys  # the answers are in Redis
    assert refreshed.status_code == 200, refreshed.text
    assert alive


async def _contest(client: httpx.AsyncClient, start: str) -> list[int]:
    """Five concurrent bookings of one slot: their statuses, sorted (409s checked to be
    ``slot_taken``)."""
    answers: list[httpx.Response] = []

    async def one() -> None:
        answers.append(await book(client, _body(start), key=uuid.uuid4().hex))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "slot_taken", answer.text
    return sorted(answer.status_code for answer in answers)


async def _redis_is_ok(client: httpx.AsyncClient) -> bool:
    code, body = await _health(client)
    return code == 200 and body["checks"]["redis"] == "ok"


async def _redis_is_down(client: httpx.AsyncClient) -> dict[str, Any] | None:
    code, body = await _health(client)
    return body if code == 200 and body["checks"]["redis"] != "ok" else None
