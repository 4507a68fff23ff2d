"""The session check from memory (adapters/_sessions.py ``SessionMemory``, the
``session-ends`` task): a session seen alive costs no Redis round trip for
LOMASH_AUTH_SESSION_MEMORY_S while the process follows session ends; a logout in
any process is heard at once by every other; ``GET /v1/me`` on the fast route
answers what the Quart route answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import trio
import trio.testing
import trio_asyncio

from adapters import SessionMemory, Sessions, open_redis
from chaos import open_proxy
from config import RedisSettings, Settings
from gateway._auth import AccountGuard
from supervisors import Unauthorized
from tests._accounts import bearer, customer
from tests._booking import eventually, prepare_database, redis_answers, running_tree
from tests._caches import CountingCache
from tests.conftest import REDIS_PORT

BOUND_S = 10.0


async def test_a_session_is_trusted_for_memory_s_only_while_following(
    autojump_clock: trio.testing.MockClock,
) -> None:
    memory = SessionMemory(5.0, capacity=2)
    memory.keep("s1")
    assert not memory.alive("s1")  # not following: nothing is kept, nothing trusted
    memory.follow()
    memory.keep("s1")
    await trio.sleep(4.999)
    assert memory.alive("s1")
    await trio.sleep(0.001)
    assert not memory.alive("s1")  # seen 5 s ago: ask again
    memory.keep("s1")
    memory.forget("s1")
    assert not memory.alive("s1")  # heard ending
    memory.keep("s1")
    memory.keep("s2")
    memory.keep("s3")  # over capacity: the oldest goes
    assert [memory.alive(s) for s in ("s1", "s2", "s3")] == [False, True, True]
    memory.unfollow()
    assert not memory.alive("s3")
    memory.follow()
    assert not memory.alive("s3")  # following again: what was seen before is forgotten


async def test_a_logout_in_one_process_is_heard_by_another_at_once(settings: Settings) -> None:
    """A second process's guard (its own memory, following the ends channel): its
    first check asks Redis, the next ones do not; a logout through the service is
    refused there within a moment, long before its 60 s memory would run out."""
    url = settings.database.url
    assert url is not None
    settings = dataclasses.replace(
        settings, auth=dataclasses.replace(settings.auth, session_memory_s=60.0)
    )
    async with trio_asyncio.open_loop():
        await prepare_database(url)
        async with (
            running_tree(settings) as client,
            open_redis(settings.redis, cleanup_s=1.0) as cache,
            trio.open_nursery() as nursery,
        ):
            await redis_answers(client)
            memory = SessionMemory(settings.auth.session_memory_s)
            nursery.start_soon(Sessions(cache).follow_ends, memory)
            counting = CountingCache(cache)
            other = AccountGuard(settings.auth, counting, memory=memory)
            with trio.fail_after(BOUND_S):
                await eventually(_following(memory), within_s=BOUND_S, every_s=0.01)
                tokens = await customer(client, "ada@example.com")
                token = tokens["access_token"]
                identity = await other.verify(token)
                asked = counting.operations
                for _ in range(20):
                    assert await other.verify(token) == identity
                remembered = counting.operations - asked
                out = await client.post("/v1/auth/logout", headers=bearer(tokens))
                assert out.status_code == 204
                await eventually(_forgotten(memory, identity.session_id), every_s=0.01)
                try:
                    await other.verify(token)
                except Unauthorized as refused:
                    code = refused.code
            nursery.cancel_scope.cancel()
    assert asked == 1  # the first check asked Redis
    assert remembered == 0  # twenty more did not
    assert code == "session_revoked"


async def test_a_lost_subscription_trusts_nothing_until_it_is_back(redis_prefix: str) -> None:
    """The connection to Redis is cut: the memory stops following (nothing trusted:
    an end published meanwhile could be missed); once Redis answers again it follows
    again, with nothing of what it had seen before."""
    async with trio_asyncio.open_loop(), open_proxy(REDIS_PORT) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        settings = RedisSettings(
            url=url, prefix=redis_prefix, reconnect_min_s=0.05, reconnect_max_s=0.4
        )
        async with open_redis(settings, cleanup_s=1.0) as cache, trio.open_nursery() as nursery:
            memory = SessionMemory(60.0)
            nursery.start_soon(Sessions(cache).follow_ends, memory)
            await eventually(_following(memory), within_s=BOUND_S, every_s=0.01)
            memory.keep("seen-before")
            assert memory.alive("seen-before")
            proxy.reset()
            await eventually(_not_following(memory), within_s=BOUND_S, every_s=0.01)
            assert not memory.alive("seen-before")
            proxy.forward()
            await eventually(_following(memory), within_s=BOUND_S, every_s=0.01)
            assert not memory.alive("seen-before")
            nursery.cancel_scope.cancel()


def _not_following(memory: SessionMemory) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not memory.following

    return check


def _following(memory: SessionMemory) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return memory.following

    return check


def _forgotten(memory: SessionMemory, session_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not memory.alive(session_id)

    return check


async def test_the_fast_me_answers_what_the_quart_route_answers(settings: Settings) -> None:
    """Status, body and headers (but the request id) of ``GET /v1/me`` on the fast
    route equal the Quart route's (reached with a query string, which the fast route
    leaves to it), for a valid token, a missing one and a revoked one."""
    assert settings.database.url is not None
    varying = {"date", "x-request-id", "content-length"}
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            await redis_answers(client)
            tokens = await customer(client, "ada@example.com")
            revoked = await customer(client, "bob@example.com")
            await client.post("/v1/auth/logout", headers=bearer(revoked))
            answers = []
            for headers in (bearer(tokens), {}, bearer(revoked)):
                fast = await client.get("/v1/me", headers=headers)
                routed = await client.get("/v1/me?via=quart", headers=headers)
                fast_body, routed_body = fast.json(), routed.json()
                for body in (fast_body, routed_body):
                    body.get("error", {}).pop("request_id", None)
                answers.append(
                    (
                        (fast.status_code, fast_body, _headers(fast.headers, varying)),
                        (routed.status_code, routed_body, _headers(routed.headers, varying)),
                    )
                )
    for fast_answer, routed_answer in answers:
        assert fast_answer == routed_answer
    assert [fast[0] for fast, _ in answers] == [200, 401, 401]
    assert answers[2][0][1]["error"]["code"] == "session_revoked"
    assert answers[0][0][1]["email"] == "ada@example.com"


def _headers(headers: object, varying: set[str]) -> dict[str, str]:
    items = headers.items()  # type: ignore[attr-defined]
    return {k.lower(): v for k, v in items if k.lower() not in varying}
