"""/health/ready from memory (gateway/_ready.py): a flood of probes costs one database
check per LOMASH_HEALTH_READY_MEMORY_S, a database going down is seen within that
bound, and the fast route answers what the Quart route answers."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any, cast

import trio
import trio.testing

from gateway._app import Lifecycle
from gateway._auth import AccountGuard
from gateway._fast import FastRoutes
from gateway._ready import Readiness, ready_answer
from supervisors import ActorRef


class Database:
    """The database's side of a check: each takes 0.2 s (virtual) and is counted."""

    def __init__(self) -> None:
        self.verdict = "ok"
        self.checks: list[float] = []

    async def check(self) -> str:
        self.checks.append(trio.current_time())
        await trio.sleep(0.2)
        return self.verdict


async def _probes(readiness: Readiness, n: int) -> list[str]:
    verdicts: list[str] = []

    async def probe() -> None:
        verdicts.append(await readiness.database())

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(probe)
    return verdicts


async def test_a_flood_of_probes_costs_one_check_per_memory_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Memory 1 s: fifty probes at once share one check; probes until 1 s after that
    check began are answered from memory; the first one at 1 s checks again."""
    database = Database()
    readiness = Readiness(database.check, memory_s=1.0)
    assert await _probes(readiness, 50) == ["ok"] * 50
    assert database.checks == [0.0]
    assert trio.current_time() == 0.2
    await trio.sleep(0.799)  # 0.999 s after the check began
    assert await _probes(readiness, 50) == ["ok"] * 50
    assert database.checks == [0.0]
    await trio.sleep(0.001)
    assert await _probes(readiness, 50) == ["ok"] * 50
    assert database.checks == [0.0, 1.0]


async def test_a_database_going_down_is_seen_within_the_memory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The verdict changes at 0.5 s: still "ok" from memory, the error from the first
    check at 1 s on."""
    database = Database()
    readiness = Readiness(database.check, memory_s=1.0)
    assert await readiness.database() == "ok"
    await trio.sleep(0.3)
    database.verdict = "error: connection refused"
    assert await readiness.database() == "ok"
    await trio.sleep(0.5)  # 1.0 s after the first check began
    assert await readiness.database() == "error: connection refused"
    assert database.checks == [0.0, 1.0]


async def test_memory_zero_checks_every_probe_but_shares_concurrent_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    database = Database()
    readiness = Readiness(database.check, memory_s=0.0)
    assert await _probes(readiness, 20) == ["ok"] * 20
    assert await readiness.database() == "ok"
    assert await readiness.database() == "ok"
    assert database.checks == [0.0, 0.2, 0.4]


async def test_a_cancelled_check_leaves_the_next_probe_to_check(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The probe making the check gives up (its request was cancelled): the probes
    waiting on it make their own check instead of waiting for ever."""
    database = Database()
    readiness = Readiness(database.check, memory_s=1.0)
    verdicts: list[str] = []

    async def waiting() -> None:
        verdicts.append(await readiness.database())

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(0.1):
            async with trio.open_nursery() as first:
                first.start_soon(readiness.database)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(waiting)
                await trio.sleep_forever()
    assert verdicts == ["ok"]
    assert database.checks == [0.0, 0.1]


async def _get(routes: FastRoutes) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/health/ready", "query_string": b""}
    await routes({**scope, "headers": []}, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"]), dict(sent[0]["headers"])


async def test_the_fast_route_answers_ready_unready_and_draining(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The documents the Quart route answers (``ready_answer``), with the database's
    reason when unready and ``Connection: close`` while draining; never the app."""
    database = Database()
    lifecycle = Lifecycle()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("/health/ready went to the app")

    routes = FastRoutes(
        app,
        cast(ActorRef[Any, Any], None),
        lifecycle,
        cast(AccountGuard, None),
        max_body_bytes=1024,
        retry_after_s=1.0,
        body_timeout_s=1.0,
        readiness=Readiness(database.check, memory_s=0.0),
    )
    status, document, _ = await _get(routes)
    assert (status, document) == ready_answer(False, "ok") == (200, {"status": "ready"})
    database.verdict = "error: breaker open (booker)"
    status, document, _ = await _get(routes)
    assert (status, document) == (
        503,
        {"status": "unready", "checks": {"database": "error: breaker open (booker)"}},
    )
    lifecycle.draining = True
    checks = len(database.checks)
    status, document, headers = await _get(routes)
    assert (status, document) == (503, {"status": "draining"})
    assert headers[b"connection"] == b"close"
    assert len(database.checks) == checks  # draining: no check made
