"""The job-queue contract (``tests/jobs_contract.py``) on both implementations.

``TestJobQueueContract`` inherits the suite; ``backend`` is parametrized over
``MemoryJobQueue`` and ``RedisJobQueue``, and ``queue_clock`` follows it:

- memory: pytest-trio's ``autojump_clock`` (the queue uses ``trio.current_time()``), so
  every wait is virtual and every duration exact; ``parked`` is
  ``wait_all_tasks_blocked`` (a parked lease is a blocked task).
- redis: no clock (real server, real time: autojump never meets real sockets). The
  queue runs under this session's key prefix plus a sub-prefix of each queue's own, so
  tests never see each other's jobs. Its connections carry a client name of their own,
  so ``parked`` can see on the server (``CLIENT LIST``: flag ``b``, command ``xread``)
  that a lease call is blocked waiting; its clock is the server's ``TIME``. The socket
  timeout is ``2 * WAIT_S``: a lease blocks for at most half of it per read, so within
  a test's bound a waiting lease is never cut into polls: one that returns in time was
  woken by an enqueue, a due time or an expiry (the 0.5 s default, whose reads are
  cut, is covered in ``test_jobs_redis_backoff``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import trio
import trio.testing
import trio_asyncio

from adapters import Cache, RedisClient
from adapters._redis import open_redis
from config import RedisSettings
from jobs._memory import MemoryJobQueue
from jobs._queue import JobQueue, QueuePolicy
from jobs._redis import RedisJobQueue
from tests.jobs_contract import WAIT_S, Backend, JobQueueContract

CLEANUP_S = 1.0
POLL_S = 0.005  # how often ``parked`` asks the server


def with_client_name(url: str, name: str) -> str:
    """``url`` with ``client_name`` in its query: redis-py names each connection so."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("client_name", name)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class MemoryBackend:
    """``MemoryJobQueue`` on trio's autojump clock."""

    virtual: bool = True

    @asynccontextmanager
    async def open(self, policy: QueuePolicy) -> AsyncIterator[JobQueue]:
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, trio.testing.MockClock), "run the test on queue_clock"
        assert clock.autojump_threshold == 0
        await trio.lowlevel.checkpoint()
        yield MemoryJobQueue(default=policy)

    async def now(self, queue: JobQueue) -> float:
        await trio.lowlevel.checkpoint()
        return trio.current_time()

    async def parked(self, queue: JobQueue, count: int = 1) -> None:
        await trio.testing.wait_all_tasks_blocked()


async def _time_us(client: RedisClient) -> int:
    seconds, microseconds = await client.time()
    return int(seconds) * 1_000_000 + int(microseconds)


async def _clients(client: RedisClient) -> list[dict[str, Any]]:
    clients: list[dict[str, Any]] = await client.client_list()
    return clients


@dataclass
class RedisBackend:
    """``RedisJobQueue`` on the real server, in real time."""

    url: str
    prefix: str
    virtual: bool = False
    _opened: dict[JobQueue, tuple[Cache, str]] = field(default_factory=dict)

    @asynccontextmanager
    async def open(self, policy: QueuePolicy) -> AsyncIterator[JobQueue]:
        name = f"jobs-contract-{secrets.token_hex(6)}"
        settings = RedisSettings(
            url=with_client_name(self.url, name),
            prefix=self.prefix,
            timeout_s=2 * WAIT_S,
            operation_timeout_s=4 * WAIT_S,
        )
        async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=CLEANUP_S) as cache:
            queue = RedisJobQueue(cache, prefix=f"jobs-{secrets.token_hex(6)}", default=policy)
            self._opened[queue] = (cache, name)
            try:
                yield queue
            finally:
                del self._opened[queue]

    async def now(self, queue: JobQueue) -> float:
        cache, _ = self._opened[queue]
        return await cache.run(_time_us) / 1_000_000  # as the queue turns µs into seconds

    async def parked(self, queue: JobQueue, count: int = 1) -> None:
        cache, name = self._opened[queue]
        while True:
            blocked = [
                c
                for c in await cache.run(_clients)
                if c.get("name") == name and "b" in c.get("flags", "") and c.get("cmd") == "xread"
            ]
            if len(blocked) >= count:
                return
            await trio.sleep(POLL_S)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> Backend:
    """Each implementation, opening fresh, empty queues with the policy a test gives."""
    if request.param == "memory":
        return MemoryBackend()
    return RedisBackend(redis_url, redis_prefix)


@pytest.fixture
def queue_clock(request: pytest.FixtureRequest, backend: Backend) -> trio.testing.MockClock | None:
    """pytest-trio's ``autojump_clock`` for the memory queue; real time for Redis."""
    if not backend.virtual:
        return None
    clock: trio.testing.MockClock = request.getfixturevalue("autojump_clock")
    return clock


class TestJobQueueContract(JobQueueContract):
    """Every contract test, once per implementation."""
