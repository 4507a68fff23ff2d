"""``MemoryJobQueue``: the job-queue contract in process, on trio's clock.

It exists for simulations and for tests of code that uses a queue: under trio's
``MockClock`` (``autojump_clock``) a 24-hour retention or a five-step backoff runs in
milliseconds of real time, at exact virtual times. The same contract suite that runs
against ``RedisJobQueue`` runs against it, so the two agree on every rule.

Each queue keeps every job's record (a frozen ``_Record``, replaced on each change)
plus one index per state: ``ready`` (insertion-ordered, the delivery order),
``delayed`` (due time), ``leased`` (lease expiry). Completed and dead jobs are found
by state. Like the Redis queue, due delayed jobs and expired leases are acted on
when ``lease`` runs (promotion first, then stalls, each in time order), never by a
background task: nothing here owns a task. A waiting ``lease`` sleeps on the queue's
``changed`` event, bounded by ``wait_s`` and by the next due time or lease expiry,
so it wakes at exactly those instants in virtual time.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import msgspec
import trio

from jobs._queue import (
    STALL_ERROR_MESSAGE,
    STALL_ERROR_TYPE,
    AttemptRecord,
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
from supervisors import NotFound

__all__ = ["MemoryJobQueue"]

STALLED = "stalled"
FAILED = "failed"

_NO_POLICIES: Mapping[str, QueuePolicy] = MappingProxyType({})
_DEFAULT_POLICY = QueuePolicy()


@dataclass(frozen=True, slots=True)
class _Record:
    job: Job  # job.attempt: deliveries so far (0 before the first)
    state: JobState
    token: str = ""
    started_at: float = 0.0  # of the current delivery
    ended_at: float = 0.0  # completed or died at
    history: tuple[AttemptRecord, ...] = ()
    previous: tuple[tuple[AttemptRecord, ...], ...] = ()


class _Queue:
    """One queue's records and indexes (owned by one ``MemoryJobQueue``)."""

    __slots__ = ("changed", "delayed", "leased", "ready", "records", "stalled_total")

    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}
        self.ready: dict[str, float] = {}  # delivery order; the value: ready since
        self.delayed: dict[str, float] = {}  # job id -> due at
        self.leased: dict[str, float] = {}  # job id -> lease expires at
        self.stalled_total = 0
        self.changed = trio.Event()

    def make_ready(self, record: _Record) -> None:
        self.records[record.job.id] = replace(record, state=JobState.WAITING, token="")
        self.ready[record.job.id] = trio.current_time()
        self.notify()

    def notify(self) -> None:
        """Wake sleeping ``lease`` calls: a job is ready, or a new due time exists."""
        self.changed.set()
        self.changed = trio.Event()

    def next_due(self) -> float | None:
        return min([*self.delayed.values(), *self.leased.values()], default=None)


class MemoryJobQueue:
    def __init__(
        self,
        *,
        policies: Mapping[str, QueuePolicy] = _NO_POLICIES,
        default: QueuePolicy = _DEFAULT_POLICY,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._policies = dict(policies)
        self._default = default
        self._jitter = jitter
        self._queues: dict[str, _Queue] = {}

    def _policy(self, queue: str) -> QueuePolicy:
        return self._policies.get(queue, self._default)

    def _queue(self, queue: str) -> _Queue:
        return self._queues.setdefault(queue, _Queue())

    async def enqueue(
        self,
        queue: str,
        kind: str,
        payload: Payload,
        *,
        job_id: str | None = None,
        delay_s: float = 0.0,
    ) -> str:
        await trio.lowlevel.checkpoint()
        q = self._queue(queue)
        job_id = job_id if job_id is not None else uuid.uuid4().hex
        if job_id in q.records:
            return job_id
        now = trio.current_time()
        # Through JSON, as on Redis: the same payloads are refused, none is shared.
        copied: Payload = msgspec.json.decode(msgspec.json.encode(payload))
        job = Job(job_id, queue, kind, copied, attempt=0, enqueued_at=now)
        if delay_s > 0:
            q.records[job_id] = _Record(job, JobState.DELAYED)
            q.delayed[job_id] = now + delay_s
            q.notify()
        else:
            q.make_ready(_Record(job, JobState.WAITING))
        return job_id

    async def lease(self, queue: str, *, worker: str, limit: int, wait_s: float) -> list[Lease]:
        if limit < 1:
            raise ValueError("limit: must be >= 1")
        await trio.lowlevel.checkpoint()
        q = self._queue(queue)
        policy = self._policy(queue)
        deadline = trio.current_time() + wait_s
        while True:
            now = trio.current_time()
            self._tick(q, policy, now)
            leases = [self._deliver(q, policy, now) for _ in range(min(limit, len(q.ready)))]
            if leases or now >= deadline:
                return leases
            due = q.next_due()
            with trio.move_on_at(deadline if due is None else min(deadline, due)):
                await q.changed.wait()

    def _tick(self, q: _Queue, policy: QueuePolicy, now: float) -> None:
        """Promote due delayed jobs, then turn expired leases into stalled attempts."""
        for _, job_id in sorted((d, i) for i, d in q.delayed.items() if d <= now):
            del q.delayed[job_id]
            q.make_ready(q.records[job_id])
        expired = sorted((e, i) for i, e in q.leased.items() if e <= now)
        for expires_at, job_id in expired:
            del q.leased[job_id]
            q.stalled_total += 1
            record = q.records[job_id]
            record = replace(
                record,
                history=(
                    *record.history,
                    AttemptRecord(
                        record.job.attempt,
                        record.started_at,
                        expires_at,
                        STALLED,
                        STALL_ERROR_TYPE,
                        STALL_ERROR_MESSAGE,
                    ),
                ),
            )
            if record.job.attempt >= policy.attempts:
                q.records[job_id] = replace(record, state=JobState.DEAD, token="", ended_at=now)
            else:
                q.make_ready(record)

    def _deliver(self, q: _Queue, policy: QueuePolicy, now: float) -> Lease:
        job_id = next(iter(q.ready))
        del q.ready[job_id]
        record = q.records[job_id]
        job = replace(record.job, attempt=record.job.attempt + 1)
        token = uuid.uuid4().hex
        expires_at = now + policy.lease_s
        q.records[job_id] = replace(
            record, job=job, state=JobState.ACTIVE, token=token, started_at=now
        )
        q.leased[job_id] = expires_at
        return Lease(job, token, expires_at)

    def _held(self, lease: Lease) -> tuple[_Queue, _Record]:
        """The queue and record of a lease still held; ``LeaseLost`` when fenced off."""
        q = self._queue(lease.job.queue)
        record = q.records.get(lease.job.id)
        if record is None or record.state is not JobState.ACTIVE or record.token != lease.token:
            raise LeaseLost(lease.job.id)
        return q, record

    async def heartbeat(self, lease: Lease) -> Lease:
        await trio.lowlevel.checkpoint()
        q, _ = self._held(lease)
        expires_at = trio.current_time() + self._policy(lease.job.queue).lease_s
        q.leased[lease.job.id] = expires_at
        return replace(lease, expires_at=expires_at)

    async def complete(self, lease: Lease) -> None:
        await trio.lowlevel.checkpoint()
        q, record = self._held(lease)
        del q.leased[lease.job.id]
        q.records[lease.job.id] = replace(
            record, state=JobState.COMPLETED, token="", ended_at=trio.current_time()
        )

    async def fail(self, lease: Lease, *, error_type: str, error_message: str) -> FailOutcome:
        await trio.lowlevel.checkpoint()
        q, record = self._held(lease)
        policy = self._policy(lease.job.queue)
        now = trio.current_time()
        del q.leased[lease.job.id]
        attempt = record.job.attempt
        entry = AttemptRecord(attempt, record.started_at, now, FAILED, error_type, error_message)
        record = replace(record, token="", history=(*record.history, entry))
        if attempt >= policy.attempts:
            q.records[lease.job.id] = replace(record, state=JobState.DEAD, ended_at=now)
            return FailOutcome(dead=True, retry_in_s=None)
        j = policy.backoff_jitter
        retry_in_s = policy.backoff_s(attempt) * (1 + self._jitter(-j, j))
        q.records[lease.job.id] = replace(record, state=JobState.DELAYED)
        q.delayed[lease.job.id] = now + retry_in_s
        q.notify()
        return FailOutcome(dead=False, retry_in_s=retry_in_s)

    async def release(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        await trio.lowlevel.checkpoint()
        q, record = self._held(lease)
        del q.leased[lease.job.id]
        uncounted = replace(record, job=replace(record.job, attempt=record.job.attempt - 1))
        if delay_s <= 0:
            q.make_ready(uncounted)
            return
        q.records[lease.job.id] = replace(uncounted, state=JobState.DELAYED)
        q.delayed[lease.job.id] = trio.current_time() + delay_s
        q.notify()

    def _dead(self, queue: str, job_id: str) -> _Record:
        record = self._queue(queue).records.get(job_id)
        if record is None or record.state is not JobState.DEAD:
            raise NotFound(f"no dead job {job_id!r} in queue {queue!r}")
        return record

    async def dead(self, queue: str, *, limit: int) -> list[DeadJob]:
        await trio.lowlevel.checkpoint()
        records = [r for r in self._queue(queue).records.values() if r.state is JobState.DEAD]
        records.sort(key=lambda r: (r.ended_at, r.job.id), reverse=True)
        return [_dead_job(r) for r in records[:limit]]

    async def dead_job(self, queue: str, job_id: str) -> DeadJob:
        await trio.lowlevel.checkpoint()
        return _dead_job(self._dead(queue, job_id))

    async def requeue_dead(self, queue: str, job_id: str) -> None:
        await trio.lowlevel.checkpoint()
        record = self._dead(queue, job_id)
        self._queue(queue).make_ready(
            replace(
                record,
                job=replace(record.job, attempt=0),
                history=(),
                previous=(*record.previous, record.history),
                ended_at=0.0,
            )
        )

    async def purge_dead(self, queue: str, job_id: str | None = None) -> int:
        await trio.lowlevel.checkpoint()
        q = self._queue(queue)
        ids = [
            i
            for i, r in q.records.items()
            if r.state is JobState.DEAD and (job_id is None or i == job_id)
        ]
        for i in ids:
            del q.records[i]
        return len(ids)

    async def trim(self, queue: str) -> int:
        await trio.lowlevel.checkpoint()
        q = self._queue(queue)
        policy = self._policy(queue)
        now = trio.current_time()
        keep = {JobState.COMPLETED: policy.keep_completed_s, JobState.DEAD: policy.keep_dead_s}
        ids = [
            i for i, r in q.records.items() if r.state in keep and now - r.ended_at >= keep[r.state]
        ]
        for i in ids:
            del q.records[i]
        return len(ids)

    async def statistics(self, queue: str) -> QueueStatistics:
        await trio.lowlevel.checkpoint()
        q = self._queue(queue)
        states = [r.state for r in q.records.values()]
        return QueueStatistics(
            queue=queue,
            waiting=len(q.ready),
            oldest_waiting_age_s=(
                trio.current_time() - next(iter(q.ready.values())) if q.ready else None
            ),
            delayed=len(q.delayed),
            active=len(q.leased),
            completed=states.count(JobState.COMPLETED),
            dead=states.count(JobState.DEAD),
            stalled_total=q.stalled_total,
        )

    async def state(self, queue: str, job_id: str) -> JobState | None:
        await trio.lowlevel.checkpoint()
        record = self._queue(queue).records.get(job_id)
        return None if record is None else record.state


def _dead_job(record: _Record) -> DeadJob:
    return DeadJob(record.job, record.history, record.ended_at, record.previous)
