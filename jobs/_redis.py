"""``RedisJobQueue``: the job-queue contract on Redis Streams, sorted sets and Lua.

Key layout, every name made by ``cache.key(prefix, queue, ...)``::

    <prefix>:<queue>:stream      Stream of deliverable jobs: one entry {id: <job id>} per
                                 waiting or leased job. Consumer group ``workers`` with one
                                 consumer, ``leases``: its pending list is exactly the
                                 leased entries (who holds one is in the job's hash, so the
                                 group never collects consumers of dead workers).
    <prefix>:<queue>:job:<id>    Hash: kind, payload (JSON), attempt, state, token, worker,
                                 started_at, expires_at, enqueued_at, ended_at, entry (its
                                 stream entry id), history and previous (JSON arrays).
    <prefix>:<queue>:delayed     ZSET of job ids by due time (enqueue delay or backoff).
    <prefix>:<queue>:leases      ZSET of leased job ids by lease expiry: the stall detector.
    <prefix>:<queue>:completed   ZSET of job ids by completion time (retention).
    <prefix>:<queue>:dead        ZSET of job ids by death time: the DLQ (and its retention).
    <prefix>:<queue>:stalled     Counter of expired leases, ever.

Times in Redis are integer microseconds of the server's ``TIME``: the queue's clock.

**Why Lua.** Every move touches a hash, the stream and one or two sorted sets, and
a fenced move must check the token and move in one step. A script runs atomically,
so no crash, cancelled call or racing worker ever sees a job in two places (or in
none), and a stale worker can never complete a job another worker holds. Scripts
are registered once (redis-py ``Script`` objects: EVALSHA, SCRIPT LOAD on NOSCRIPT).

**Leasing.** One script promotes due delayed jobs, turns expired leases into
``stalled`` attempts (dead-lettering a last attempt), then delivers with a
non-blocking ``XREADGROUP`` and marks each job active, all atomically. A blocking
``XREADGROUP`` outside the script would move an entry into the pending list before
the hash says "active", and a cancellation in between would strand it. So when
nothing is ready the caller parks on ``XREAD BLOCK`` after the stream's last id
(returned by the same script: no ``XADD`` slips between), for at most what is left
of ``wait_s``, the time until the next due job or lease expiry, and half the
client's socket timeout (so a block never trips the short timeouts), then runs the
script again. Each round is one bridge hop; trio's cancellation cancels the block.
A script runs to completion even when its caller is cancelled: a lease reply lost
that way expires and is redelivered as a stalled attempt (at least once).

Scripts build job hash names from the ids they read, so this needs a standalone
Redis or Sentinel, not Redis Cluster.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from types import MappingProxyType
from typing import Any

import msgspec
import trio
from redis.commands.core import AsyncScript

from adapters import Cache, RedisClient
from jobs._queue import (
    STALL_ERROR_MESSAGE,
    STALL_ERROR_TYPE,
    DeadJob,
    FailOutcome,
    Job,
    JobState,
    Lease,
    LeaseLost,
    Payload,
    QueuePolicy,
    QueueStatistics,
)
from jobs._redis_layout import (
    _PRELUDE,
    _SOURCES,
    _US,
    _dead_job,
    _Keys,
    _pairs,
    _Scripts,
    _seconds,
    _text,
)
from supervisors import NotFound

__all__ = ["RedisJobQueue"]

_NO_POLICIES: Mapping[str, QueuePolicy] = MappingProxyType({})
_DEFAULT_POLICY = QueuePolicy()
_MS = 1_000  # milliseconds per second: XREAD's BLOCK unit
_BLOCK_SHARE = 0.5  # of the socket timeout, at most, per blocking read
_BATCH = 500  # jobs forgotten per trim / purge script run


@dataclass(frozen=True, slots=True)
class _Round:
    leases: list[Lease]
    now_us: int
    next_due_us: int  # -1: nothing delayed or leased
    last_id: str


class RedisJobQueue:
    def __init__(
        self,
        cache: Cache,
        *,
        prefix: str,
        policies: Mapping[str, QueuePolicy] = _NO_POLICIES,
        default: QueuePolicy = _DEFAULT_POLICY,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._cache = cache
        self._prefix = prefix
        self._policies = dict(policies)
        self._default = default
        self._jitter = jitter
        self._registered: _Scripts | None = None

    def _policy(self, queue: str) -> QueuePolicy:
        return self._policies.get(queue, self._default)

    def _keys(self, queue: str) -> _Keys:
        names = ("stream", "delayed", "leases", "completed", "dead", "stalled")
        return _Keys(
            queue,
            tuple(self._cache.key(self._prefix, queue, n) for n in names),
            self._cache.key(self._prefix, queue, "job", ""),
        )

    def _scripts(self, client: RedisClient) -> _Scripts:
        if self._registered is None:
            scripts = {n: client.register_script(_PRELUDE + s) for n, s in _SOURCES.items()}
            self._registered = _Scripts(**scripts)
        return self._registered

    async def _run(self, script: str, keys: Sequence[str], *args: str | int | bytes) -> Any:
        """One script call, in one bridge hop."""

        async def operation(client: RedisClient) -> Any:
            call: AsyncScript = getattr(self._scripts(client), script)
            return await call(keys=list(keys), args=list(args), client=client)

        return await self._cache.run(operation)

    async def enqueue(
        self,
        queue: str,
        kind: str,
        payload: Payload,
        *,
        job_id: str | None = None,
        delay_s: float = 0.0,
    ) -> str:
        keys = self._keys(queue)
        job_id = job_id if job_id is not None else uuid.uuid4().hex
        body = msgspec.json.encode(payload)
        delay_us = max(0, round(delay_s * _US))
        await self._run("enqueue", keys.job(job_id), keys.job_prefix, job_id, kind, body, delay_us)
        return job_id

    async def lease(self, queue: str, *, worker: str, limit: int, wait_s: float) -> list[Lease]:
        if limit < 1:
            raise ValueError("limit: must be >= 1")
        keys = self._keys(queue)
        policy = self._policy(queue)
        deadline = trio.current_time() + wait_s
        block_ms, after = 0, "0-0"
        while True:
            tokens = [uuid.uuid4().hex for _ in range(limit)]
            round_ = await self._cache.run(
                partial(self._lease_round, keys, policy, worker, tokens, block_ms, after),
                waits_s=block_ms / _MS,
            )
            remaining_s = deadline - trio.current_time()
            if round_.leases or remaining_s <= 0:
                return round_.leases
            if round_.next_due_us >= 0:
                remaining_s = min(remaining_s, (round_.next_due_us - round_.now_us) / _US)
            block_ms, after = max(1, math.ceil(remaining_s * _MS)), round_.last_id

    async def _lease_round(
        self,
        keys: _Keys,
        policy: QueuePolicy,
        worker: str,
        tokens: list[str],
        block_ms: int,
        after: str,
        client: RedisClient,
    ) -> _Round:
        """Runs on the asyncio side: wait for a new entry (if asked), then lease."""
        if block_ms > 0:
            timeout_s = client.connection_pool.connection_kwargs.get("socket_timeout")
            if timeout_s is not None:
                block_ms = max(1, min(block_ms, math.floor(timeout_s * _BLOCK_SHARE * _MS)))
            await client.xread({keys.sets[0]: after}, count=1, block=block_ms)
        reply = await self._scripts(client).lease(
            keys=list(keys.sets),
            args=[
                keys.job_prefix,
                round(policy.lease_s * _US),
                policy.attempts,
                worker,
                STALL_ERROR_TYPE,
                STALL_ERROR_MESSAGE,
                *tokens,
            ],
            client=client,
        )
        leased, now_us, next_due_us, last_id = reply
        leases = [
            Lease(
                Job(
                    id=_text(job_id),
                    queue=keys.queue,
                    kind=_text(kind),
                    payload=msgspec.json.decode(payload),
                    attempt=int(attempt),
                    enqueued_at=_seconds(enqueued_at),
                ),
                token=_text(token),
                expires_at=_seconds(expires),
            )
            for job_id, kind, payload, attempt, enqueued_at, token, expires in leased
        ]
        return _Round(leases, int(now_us), int(next_due_us), _text(last_id))

    async def heartbeat(self, lease: Lease) -> Lease:
        keys = self._keys(lease.job.queue)
        lease_us = round(self._policy(lease.job.queue).lease_s * _US)
        expires = await self._run(
            "heartbeat",
            keys.job(lease.job.id),
            keys.job_prefix,
            lease.job.id,
            lease.token,
            lease_us,
        )
        if not expires:
            raise LeaseLost(lease.job.id)
        return replace(lease, expires_at=_seconds(expires))

    async def complete(self, lease: Lease) -> None:
        keys = self._keys(lease.job.queue)
        args = (keys.job_prefix, lease.job.id, lease.token)
        if not await self._run("complete", keys.job(lease.job.id), *args):
            raise LeaseLost(lease.job.id)

    async def fail(self, lease: Lease, *, error_type: str, error_message: str) -> FailOutcome:
        keys = self._keys(lease.job.queue)
        policy = self._policy(lease.job.queue)
        retry_in_s = 0.0
        if lease.job.attempt < policy.attempts:
            j = policy.backoff_jitter
            retry_in_s = policy.backoff_s(lease.job.attempt) * (1 + self._jitter(-j, j))
        dead = await self._run(
            "fail",
            keys.job(lease.job.id),
            keys.job_prefix,
            lease.job.id,
            lease.token,
            policy.attempts,
            round(retry_in_s * _US),
            error_type,
            error_message,
        )
        if dead < 0:
            raise LeaseLost(lease.job.id)
        return FailOutcome(dead=True, retry_in_s=None) if dead else FailOutcome(False, retry_in_s)

    async def release(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        keys = self._keys(lease.job.queue)
        args = (keys.job_prefix, lease.job.id, lease.token, round(max(delay_s, 0.0) * _US))
        if not await self._run("release", keys.job(lease.job.id), *args):
            raise LeaseLost(lease.job.id)

    async def dead(self, queue: str, *, limit: int) -> list[DeadJob]:
        keys = self._keys(queue)
        if limit < 1:
            return []
        reply = await self._run("dead", keys.sets, keys.job_prefix, limit)
        found = [(_text(job_id), _pairs(fields)) for job_id, fields in reply]
        # A job requeued or purged between the script and here is not dead any more.
        return [_dead_job(queue, i, f) for i, f in found if f.get("state") == JobState.DEAD]

    async def dead_job(self, queue: str, job_id: str) -> DeadJob:
        key = self._keys(queue).job(job_id)[-1]

        async def operation(client: RedisClient) -> dict[str, str]:
            fields = await client.hgetall(key)
            return {_text(k): _text(v) for k, v in fields.items()}

        fields = await self._cache.run(operation)
        if fields.get("state") != JobState.DEAD:
            raise NotFound(f"no dead job {job_id!r} in queue {queue!r}")
        return _dead_job(queue, job_id, fields)

    async def requeue_dead(self, queue: str, job_id: str) -> None:
        keys = self._keys(queue)
        if not await self._run("requeue", keys.job(job_id), keys.job_prefix, job_id):
            raise NotFound(f"no dead job {job_id!r} in queue {queue!r}")

    async def purge_dead(self, queue: str, job_id: str | None = None) -> int:
        keys = self._keys(queue)
        if job_id is not None:
            return int(await self._run("purge", keys.sets, keys.job_prefix, job_id, _BATCH))
        total = 0
        while True:
            purged = int(await self._run("purge", keys.sets, keys.job_prefix, "", _BATCH))
            total += purged
            if purged < _BATCH:
                return total

    async def trim(self, queue: str) -> int:
        keys = self._keys(queue)
        policy = self._policy(queue)
        keep_completed_us = round(policy.keep_completed_s * _US)
        keep_dead_us = round(policy.keep_dead_s * _US)
        total = 0
        while True:
            completed, dead = await self._run(
                "trim", keys.sets, keys.job_prefix, keep_completed_us, keep_dead_us, _BATCH
            )
            total += completed + dead
            if max(completed, dead) < _BATCH:
                return int(total)

    async def statistics(self, queue: str) -> QueueStatistics:
        keys = self._keys(queue)
        reply = await self._run("statistics", keys.sets, keys.job_prefix)
        waiting, delayed, active, completed, dead, stalled, age_ms = (int(n) for n in reply)
        age_s = None if age_ms < 0 else age_ms / 1000
        return QueueStatistics(queue, waiting, delayed, active, completed, dead, stalled, age_s)

    async def state(self, queue: str, job_id: str) -> JobState | None:
        key = self._keys(queue).job(job_id)[-1]

        async def operation(client: RedisClient) -> bytes | str | None:
            state: bytes | str | None = await client.hget(key, "state")
            return state

        state = await self._cache.run(operation)
        return None if state is None else JobState(_text(state))
