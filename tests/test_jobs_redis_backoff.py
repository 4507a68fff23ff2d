"""RedisJobQueue under the spec's policy: 5 attempts, backoff 1, 2, 4, 8 s, then the DLQ.

The real server in real time (virtual time cannot reach Redis), with the DEFAULT
``QueuePolicy`` (jitter pinned: none in the policy, or a jitter function at the top
of the default +-10 %). Nothing is timed on the test's clock. After each failure the
test reads where the queue keeps its schedule (documented in ``jobs/_redis.py``):

- the failure's time as the queue recorded it (the job hash's ``history``, in
  microseconds of Redis ``TIME``, bracketed by ``TIME`` read before and after), and
- the retry's due time (the job's score in ``<prefix>:<queue>:delayed``),

which must be exactly the backoff apart, to the microsecond. The first backoff (1 s)
is waited out for real: the job is not delivered before its due time. The later
ones (2, 4, 8 s) are not waited out: the queue has no call that makes a delayed job
due early, so the test moves the job's score back to its failure time, which makes
it due now; the queue's own lease then promotes and delivers it (as it does any due
job). The 5th failure dead-letters the job with its full history of five attempts.

Also here: a lease under the service's own 0.5 s socket timeout, whose blocking reads
are cut into rounds (the contract suite runs Redis with reads that are not).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
import trio
import trio_asyncio

from adapters import Cache, RedisClient
from adapters._redis import open_redis
from config import QueuePolicy, RedisSettings
from jobs._queue import FailOutcome, JobState
from jobs._redis import RedisJobQueue
from tests.test_jobs_contract import with_client_name

BOUND_S = 10.0
Q = "charges"
US = 1_000_000  # the queue stores microseconds of Redis TIME
POLL_S = 0.005  # how often ``parked`` asks the server
SPEC = replace(QueuePolicy(), backoff_jitter=0.0)


def top_jitter(low: float, high: float) -> float:
    return high


class Inspector:
    """Reads (and, to make a job due, writes) the queue's keys, by its key layout."""

    def __init__(self, cache: Cache, jobs_prefix: str, client_name: str) -> None:
        self._cache = cache
        self._client_name = client_name
        self._delayed = cache.key(jobs_prefix, Q, "delayed")
        self._job = cache.key(jobs_prefix, Q, "job", "")

    async def now_us(self) -> int:
        async def operation(client: RedisClient) -> int:
            seconds, microseconds = await client.time()
            return int(seconds) * US + int(microseconds)

        return await self._cache.run(operation)

    async def parked(self) -> None:
        """Returns once a lease call of this queue is blocked in a read on the server."""

        async def operation(client: RedisClient) -> list[dict[str, Any]]:
            clients: list[dict[str, Any]] = await client.client_list()
            return clients

        while True:
            clients = await self._cache.run(operation)
            mine = [c for c in clients if c.get("name") == self._client_name]
            if any("b" in c.get("flags", "") for c in mine):
                return
            await trio.sleep(POLL_S)

    async def until_us(self, at_us: int) -> None:
        """Returns once Redis's clock reads ``at_us`` or later."""
        while True:
            left = at_us - await self.now_us()
            if left <= 0:
                return
            await trio.sleep(left / US)

    async def due_us(self, job_id: str) -> int | None:
        """The job's score in the delayed set: when it is due, or None if not delayed."""

        async def operation(client: RedisClient) -> float | None:
            score: float | None = await client.zscore(self._delayed, job_id)
            return score

        score = await self._cache.run(operation)
        return None if score is None else round(score)

    async def history(self, job_id: str) -> list[dict[str, str]]:
        """The job's attempts so far, as its hash holds them (times in µs)."""

        async def operation(client: RedisClient) -> bytes | str | None:
            raw: bytes | str | None = await client.hget(self._job + job_id, "history")
            return raw

        raw = await self._cache.run(operation)
        assert raw is not None
        attempts: list[dict[str, str]] = json.loads(raw)
        return attempts

    async def make_due(self, job_id: str, at_us: int) -> None:
        """Move the job's due time back to ``at_us`` (in the past): due now."""

        async def operation(client: RedisClient) -> int | float | None:
            changed: int | float | None = await client.zadd(
                self._delayed, {job_id: at_us}, xx=True, ch=True
            )
            return changed

        assert await self._cache.run(operation) == 1


@asynccontextmanager
async def redis_queue(
    redis_url: str,
    redis_prefix: str,
    policy: QueuePolicy,
    jitter: Callable[[float, float], float] | None = None,
) -> AsyncIterator[tuple[RedisJobQueue, Inspector]]:
    """A fresh queue (a key prefix of its own) on the real Redis, with the service's
    own client settings (0.5 s socket timeout) and a client name of its own, and its
    inspector."""
    jobs_prefix = f"jobs-{secrets.token_hex(6)}"
    name = f"jobs-backoff-{secrets.token_hex(6)}"
    settings = RedisSettings(url=with_client_name(redis_url, name), prefix=redis_prefix)
    async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=1.0) as cache:
        if jitter is None:
            queue = RedisJobQueue(cache, prefix=jobs_prefix, default=policy)
        else:
            queue = RedisJobQueue(cache, prefix=jobs_prefix, default=policy, jitter=jitter)
        yield queue, Inspector(cache, jobs_prefix, name)


def test_the_spec_policy_is_the_default() -> None:
    """QueuePolicy() is the spec's: 5 attempts, backoff 1 s doubling (1, 2, 4, 8 s)."""
    policy = QueuePolicy()
    assert (policy.attempts, policy.backoff_base_s, policy.backoff_factor) == (5, 1.0, 2.0)
    assert [policy.backoff_s(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]
    assert replace(policy, backoff_jitter=0.0) == SPEC


@pytest.mark.parametrize(
    ("policy", "jitter", "backoffs"),
    [
        (SPEC, None, [1.0, 2.0, 4.0, 8.0]),
        (QueuePolicy(), top_jitter, [1.1, 2.2, 4.4, 8.8]),
    ],
    ids=["no-jitter", "top-jitter"],
)
async def test_retries_are_scheduled_1_2_4_8_s_after_each_failure_then_dead_lettered(
    redis_url: str,
    redis_prefix: str,
    policy: QueuePolicy,
    jitter: Callable[[float, float], float] | None,
    backoffs: list[float],
) -> None:
    """Retry n is due exactly backoff_s(n) (1, 2, 4, 8 s) after failure n; the 5th dead-letters."""
    async with redis_queue(redis_url, redis_prefix, policy, jitter) as (queue, redis):
        with trio.fail_after(BOUND_S):
            job_id = await queue.enqueue(Q, "charge", {"amount": 5})
            failed_us: list[int] = []
            due_us: list[int] = []
            for attempt, backoff in enumerate(backoffs, start=1):
                [lease] = await queue.lease(Q, worker="w1", limit=1, wait_s=BOUND_S)
                assert (lease.job.id, lease.job.attempt) == (job_id, attempt)
                before = await redis.now_us()
                outcome = await queue.fail(
                    lease, error_type="Declined", error_message=f"try {attempt}"
                )
                after = await redis.now_us()
                assert not outcome.dead
                assert outcome.retry_in_s is not None
                assert round(outcome.retry_in_s * US) == round(backoff * US)
                assert await queue.state(Q, job_id) is JobState.DELAYED
                entry = (await redis.history(job_id))[-1]
                assert (entry["attempt"], entry["outcome"]) == (str(attempt), "failed")
                failed = int(entry["ended_at"])
                assert before <= failed <= after  # the failure's time on Redis's clock
                due = await redis.due_us(job_id)
                assert due is not None
                assert due - failed == round(backoff * US)  # exactly the backoff
                failed_us.append(failed)
                due_us.append(due)
                statistics = await queue.statistics(Q)
                assert (statistics.delayed, statistics.waiting, statistics.active) == (1, 0, 0)
                if attempt > 1:  # the first backoff is waited out for real
                    await redis.make_due(job_id, failed)

            [last] = await queue.lease(Q, worker="w1", limit=1, wait_s=BOUND_S)
            assert last.job.attempt == policy.attempts == 5
            outcome = await queue.fail(last, error_type="Declined", error_message="try 5")
            assert outcome == FailOutcome(dead=True, retry_in_s=None)
            assert await queue.state(Q, job_id) is JobState.DEAD
            assert await redis.due_us(job_id) is None
            dead = await queue.dead_job(Q, job_id)
            listed = await queue.dead(Q, limit=10)
            statistics = await queue.statistics(Q)

    assert [d.job.id for d in listed] == [job_id]
    assert (statistics.dead, statistics.delayed, statistics.waiting, statistics.active) == (
        1,
        0,
        0,
        0,
    )
    assert (dead.job.kind, dead.job.payload, dead.job.attempt) == ("charge", {"amount": 5}, 5)
    assert [(h.attempt, h.outcome, h.error_type, h.error_message) for h in dead.history] == [
        (n, "failed", "Declined", f"try {n}") for n in range(1, 6)
    ]
    assert [round(h.ended_at * US) for h in dead.history[:4]] == failed_us
    # The first retry was not delivered before it was due (waited out for real).
    assert round(dead.history[1].started_at * US) >= due_us[0]
    assert all(h.started_at <= h.ended_at for h in dead.history)
    assert dead.history[-1].ended_at <= dead.died_at
    assert dead.previous == ()


async def test_a_lease_waits_across_blocking_reads_cut_by_the_socket_timeout(
    redis_url: str, redis_prefix: str
) -> None:
    """Under the 0.5 s socket timeout a lease waits across cut reads: [] after wait_s, or a job."""
    async with redis_queue(redis_url, redis_prefix, SPEC) as (queue, redis):
        with trio.fail_after(BOUND_S):
            start = trio.current_time()
            assert await queue.lease(Q, worker="w1", limit=1, wait_s=1.0) == []
            assert trio.current_time() - start >= 1.0  # wait_s is measured on trio's clock
            got = []

            async def worker() -> None:
                got.extend(await queue.lease(Q, worker="w1", limit=1, wait_s=BOUND_S))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker)
                await redis.parked()
                # A second of Redis's clock (four reads' worth) before the job comes.
                await redis.until_us(await redis.now_us() + US)
                await redis.parked()
                assert got == []
                job_id = await queue.enqueue(Q, "charge", {})
            assert [x.job.id for x in got] == [job_id]
