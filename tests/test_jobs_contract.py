"""The job-queue contract (``tests/jobs_contract.py``) on both implementations.

``TestJobQueueContract`` inherits the suite; ``queue_factory`` is parametrized over
``MemoryJobQueue`` and ``RedisJobQueue``. The Redis one runs on the real server under
this session's key prefix plus a sub-prefix of each queue's own, so tests never see
each other's jobs.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio_asyncio

from adapters._redis import open_redis
from config import RedisSettings
from jobs._memory import MemoryJobQueue
from jobs._queue import JobQueue, QueuePolicy
from jobs._redis import RedisJobQueue
from tests.jobs_contract import JobQueueContract, QueueFactory

CLEANUP_S = 1.0


@asynccontextmanager
async def open_memory_queue(policy: QueuePolicy) -> AsyncIterator[JobQueue]:
    await trio.lowlevel.checkpoint()
    yield MemoryJobQueue(default=policy)


@pytest.fixture(params=["memory", "redis"])
def queue_factory(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> QueueFactory:
    """Opens a fresh, empty queue of each implementation with the given policy."""
    if request.param == "memory":
        return open_memory_queue

    @asynccontextmanager
    async def open_redis_queue(policy: QueuePolicy) -> AsyncIterator[JobQueue]:
        settings = RedisSettings(url=redis_url, prefix=redis_prefix)
        async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=CLEANUP_S) as cache:
            yield RedisJobQueue(cache, prefix=f"jobs-{secrets.token_hex(6)}", default=policy)

    return open_redis_queue


class TestJobQueueContract(JobQueueContract):
    """Every contract test, once per implementation."""
