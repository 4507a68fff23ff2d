"""Job workers in real `lomash serve` processes: SIGKILL mid-job, SIGTERM during a job."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
import trio
import trio_asyncio

from adapters import open_redis
from config import RedisSettings
from jobs import JobState, RedisJobQueue
from tests.test_process import BOUND_S, service

QUEUE = "test-q"
KIND = "test.effect"


@pytest.fixture
def environment(migrated_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return {
        "LOMASH_DATABASE_URL": migrated_url,
        "LOMASH_REDIS_URL": redis_url,
        # A prefix of this test's own: no other process works on these queues.
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}{secrets.token_hex(4)}:",
        "LOMASH_JOBS_QUEUES": QUEUE,
        "LOMASH_JOBS_LEASE_S": "2",
        "LOMASH_JOBS_HEARTBEAT_S": "0.5",
        "LOMASH_JOBS_POLL_S": "0.2",
    }


@asynccontextmanager
async def job_queue(environment: dict[str, str]) -> AsyncIterator[RedisJobQueue]:
    settings = RedisSettings(
        url=environment["LOMASH_REDIS_URL"], prefix=environment["LOMASH_REDIS_PREFIX"]
    )
    async with open_redis(settings, cleanup_s=1.0) as cache:
        yield RedisJobQueue(cache, prefix="jobs")


async def effects(url: str, job_id: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(url)
        try:
            value = await connection.fetchval(
                "SELECT count(*) FROM job_effects WHERE job_id = $1", job_id
            )
        finally:
            await connection.close()
        assert isinstance(value, int)
        return value

    result: int = await trio_asyncio.aio_as_trio(count)()
    return result


async def wait_for_state(queue: RedisJobQueue, job_id: str, state: JobState) -> None:
    while True:  # another process moves it: polling the queue is all we can do
        if await queue.state(QUEUE, job_id) is state:
            return
        await trio.sleep(0.05)


async def test_a_worker_killed_mid_job_leaves_it_to_be_completed_once_elsewhere(
    environment: dict[str, str], migrated_url: str
) -> None:
    """SIGKILL after the effect: the lease expires, another process finishes; one effect."""
    job_id = f"kill-{secrets.token_hex(4)}"
    async with trio_asyncio.open_loop(), job_queue(environment) as queue:
        with trio.fail_after(BOUND_S):
            async with service(environment) as first:
                await queue.enqueue(QUEUE, KIND, {"first_time_sleep_s": 60}, job_id=job_id)
                await first.logs.wait_for("test_job_effect")
                first.process.kill()
                await first.process.wait()
            async with service(environment) as second:
                await wait_for_state(queue, job_id, JobState.COMPLETED)
                [redo] = await second.logs.wait_for("test_job_effect")
            stats = await queue.statistics(QUEUE)
            recorded = await effects(migrated_url, job_id)
    assert (redo["attempt"], redo["first"]) == (2, False)
    assert stats.stalled_total == 1
    assert recorded == 1


async def test_sigterm_lets_a_running_job_finish(environment: dict[str, str]) -> None:
    """SIGTERM during a 2 s job: it completes, then the process exits 0."""
    job_id = f"term-{secrets.token_hex(4)}"
    async with trio_asyncio.open_loop(), job_queue(environment) as queue:
        with trio.fail_after(BOUND_S):
            async with service(environment) as running:
                await queue.enqueue(QUEUE, KIND, {"sleep_s": 2}, job_id=job_id)
                await running.logs.wait_for("test_job_effect")
                running.signal()
                status = await running.process.wait()
            state = await queue.state(QUEUE, job_id)
    assert status == 0
    assert state is JobState.COMPLETED
    assert running.logs.named("job_completed")


async def test_sigterm_hands_back_a_job_longer_than_the_drain_at_once(
    environment: dict[str, str],
) -> None:
    """Drain 1 s, job 60 s: handed back at SIGTERM's deadline, picked up well before the lease."""
    environment = {**environment, "LOMASH_DRAIN_TIMEOUT_S": "1", "LOMASH_JOBS_LEASE_S": "30"}
    job_id = f"back-{secrets.token_hex(4)}"
    async with trio_asyncio.open_loop(), job_queue(environment) as queue:
        with trio.fail_after(BOUND_S):
            async with service(environment) as first:
                await queue.enqueue(QUEUE, KIND, {"first_time_sleep_s": 60}, job_id=job_id)
                await first.logs.wait_for("test_job_effect")
                first.signal()
                status = await first.process.wait()
            assert status == 0
            assert first.logs.named("job_handed_back")
            assert await queue.state(QUEUE, job_id) is JobState.WAITING
            with trio.fail_after(10.0):  # far less than the 30 s lease
                async with service(environment) as second:
                    await wait_for_state(queue, job_id, JobState.COMPLETED)
                    [redo] = await second.logs.wait_for("test_job_effect")
    assert (redo["attempt"], redo["first"]) == (1, False)
