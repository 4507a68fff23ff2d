"""The hot reads answered from the catalogue's in-process snapshots (actors/_snapshots.py,
gateway/_fast.py): the same answers as the Quart routes, no Postgres or Redis call on
a warm hit, a change seen once the copy is older than LOMASH_CATALOGUE_MEMORY_S."""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from typing import Any, cast

import httpx
import trio
import trio.testing
import trio_asyncio

from actors._snapshots import PRODUCTS, SHOWROOMS, Snapshots
from config import Settings
from gateway._app import Lifecycle
from gateway._auth import AccountGuard
from gateway._fast import FastRead, FastRoutes
from supervisors import ActorRef, ConnectionLost
from tests._booking import eventually, prepare_database, redis_answers, running_tree
from tests.conftest import fetch

READS = ("/health/live", "/v1/showrooms", "/v1/products")
VARYING = {"date", "x-request-id", "server"}


async def test_a_snapshot_is_fresh_for_exactly_max_age_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    snapshots = Snapshots(5.0)
    assert snapshots.fresh(SHOWROOMS) is None
    snapshots.keep(SHOWROOMS, ["leeds"])
    await trio.sleep(5.0)
    kept = snapshots.fresh(SHOWROOMS)
    assert kept is not None
    assert kept.value == ["leeds"]
    await trio.sleep(0.001)
    assert snapshots.fresh(SHOWROOMS) is None  # older than the bound: not served
    assert snapshots.fresh(PRODUCTS) is None
    off = Snapshots(0.0)
    off.keep(SHOWROOMS, ["leeds"])
    assert off.fresh(SHOWROOMS) is None  # 0 keeps nothing


def _answer(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in VARYING}
    return response.status_code, response.content, headers


async def _answers(settings: Settings) -> dict[str, Any]:
    async with running_tree(settings) as client:
        await redis_answers(client)
        seen = {}
        for path in READS:
            await client.get(path)  # the first ask keeps a snapshot (if they are on)
            seen[path] = _answer(await client.get(path))
        return seen


async def test_the_fast_reads_answer_exactly_what_the_routes_answer(settings: Settings) -> None:
    """Body, status and headers of the warm (snapshot) answers equal the Quart routes'
    (snapshots off), so the two cannot drift apart unseen."""
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        fast = await _answers(settings)
        routed = await _answers(dataclasses.replace(settings, catalogue_memory_s=0.0))
    assert fast == routed
    assert {path: status for path, (status, _, _) in fast.items()} == dict.fromkeys(READS, 200)


async def _catalogue_processed(client: httpx.AsyncClient) -> float:
    """Messages the catalogue actor has handled (its counter in /metrics)."""
    text = (await client.get("/metrics")).text
    [line] = [
        line
        for line in text.splitlines()
        if line.startswith('lomash_actor_processed_total{actor="catalogue"}')
    ]
    return float(line.rsplit(" ", 1)[1])


async def test_a_warm_read_costs_no_database_call_and_a_change_shows_within_the_bound(
    settings: Settings,
) -> None:
    assert settings.database.url is not None
    url = settings.database.url
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        bounded = dataclasses.replace(settings, catalogue_memory_s=0.5)
        async with running_tree(bounded) as client:
            await redis_answers(client)
            first = await client.get("/v1/showrooms")
            before = await _catalogue_processed(client)
            warm = [await client.get("/v1/showrooms") for _ in range(20)]
            asked = await _catalogue_processed(client) - before
            await fetch(
                url,
                "INSERT INTO showrooms (id, name, address, city, postcode)"
                " VALUES ('york', 'Lomash Wood York', '1 Stonegate', 'York', 'YO1 8AN')",
            )

            async def york_shown() -> bool:
                rooms = (await client.get("/v1/showrooms")).json()["showrooms"]
                return "york" in {r["id"] for r in rooms}

            await eventually(york_shown, within_s=10)
    assert first.status_code == 200
    assert [w.content for w in warm] == [first.content] * 20
    # Twenty warm reads, and the catalogue (the only reader of showrooms, from
    # Postgres or Redis) was not asked once: each was answered from memory.
    assert asked == 0


class CountingCatalogue:
    """The catalogue's side of a renewal: each ask takes 0.1 s (virtual), is counted,
    and keeps a new snapshot (or fails, when told to)."""

    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self.asks = 0
        self.failing = False

    async def ask(self, message: object) -> None:
        self.asks += 1
        await trio.sleep(0.1)
        if self.failing:
            raise ConnectionLost("postgres is down", dependency="postgres")
        self.snapshots.keep(SHOWROOMS, [f"renewed {self.asks}"])


async def _get(routes: FastRoutes, path: str) -> tuple[int, bytes]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    await routes(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def test_a_due_copy_is_renewed_by_one_request_while_the_others_are_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Virtual time, max age 4 s: renewed from 2 s on by one request at a time (the
    others answered from the copy meanwhile); while renewals fail the copy is served
    up to 4 s old, then the request goes to the app (the Quart route)."""
    snapshots = Snapshots(4.0)
    catalogue = CountingCatalogue(snapshots)
    routed: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    routes = FastRoutes(
        app,
        cast(ActorRef[Any, Any], None),
        Lifecycle(),
        cast(AccountGuard, None),
        max_body_bytes=1024,
        retry_after_s=1.0,
        body_timeout_s=1.0,
        snapshots=snapshots,
        reads={"/v1/showrooms": FastRead(SHOWROOMS, lambda rows: {"rows": rows}, object)},
        catalogue=cast(ActorRef[Any, Any], catalogue),
    )
    snapshots.keep(SHOWROOMS, ["first"])

    async def ten_at_once() -> list[tuple[int, bytes]]:
        answers: list[tuple[int, bytes]] = []

        async def one() -> None:
            answers.append(await _get(routes, "/v1/showrooms"))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one)
        return answers

    await trio.sleep(1.0)
    assert await ten_at_once() == [(200, b'{"rows":["first"]}')] * 10
    assert catalogue.asks == 0  # not due yet
    await trio.sleep(1.5)  # 2.5 s old: due
    renewed = await ten_at_once()
    assert catalogue.asks == 1  # one renewal, not ten
    assert sorted(renewed) == [(200, b'{"rows":["first"]}')] * 9 + [
        (200, b'{"rows":["renewed 1"]}')
    ]
    catalogue.failing = True
    await trio.sleep(2.5)  # the renewed copy is 2.5 s old: due, and renewals fail
    assert await ten_at_once() == [(200, b'{"rows":["renewed 1"]}')] * 10
    await trio.sleep(1.5)  # 4.1 s old: past the bound
    assert (await _get(routes, "/v1/showrooms"))[0] == 503
    assert routed == ["/v1/showrooms"]  # answered by the app, not from the stale copy
