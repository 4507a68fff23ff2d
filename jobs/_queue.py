"""The durable job queue: records, the ``JobQueue`` Protocol, and its semantics.

Two implementations honour this contract (one contract test suite runs against
both): ``RedisJobQueue`` (Redis Streams + consumer groups, sorted sets, Lua) and
``MemoryJobQueue`` (in-process, on trio's clock, for virtual-time simulations).

Semantics (defaults from the spec's BullMQ settings, per queue in ``QueuePolicy``):

- **At-least-once.** A job is enqueued once per ``job_id`` (enqueueing the same id
  again is a no-op that returns the id), then delivered until it is completed or dead.
- **Leases.** ``lease`` hands a job to one worker for ``lease_s`` with a fresh
  fencing ``token``. ``heartbeat`` extends it (workers heartbeat from a task separate
  from the handler). A lease that expires (the worker died: SIGKILL, OOM) makes the
  job deliverable again; that delivery counts as an attempt whose history entry says
  ``stalled``. A worker whose lease was lost (expired and re-leased, or released)
  cannot ``heartbeat``, ``complete``, ``fail`` or ``release``: ``LeaseLost`` (fencing).
- **Attempts and backoff.** ``attempts`` deliveries at most (default 5). After a
  failed attempt ``n`` (1-based) the job waits ``backoff_base_s * factor**(n-1)``
  (1, 2, 4, 8 s) spread by +-``backoff_jitter`` (a fraction), then is delivered again.
- **Dead-letter queue.** A job whose last attempt failed (or stalled) moves to the
  DLQ with its full history: every attempt's number, start and end time, outcome
  (failed / stalled) and error type and message. The DLQ can be listed, inspected,
  requeued (attempts and history start afresh, the old history is kept under
  ``previous``) and purged.
- **Hand-back.** ``release`` returns a leased job without counting the attempt
  (graceful shutdown: work not started is handed to another worker at once), or
  after a delay (``RetryLater``: the handler's dependency is down).
- **Retention.** ``trim`` forgets completed jobs older than ``keep_completed_s``
  (24 h) and dead ones older than ``keep_dead_s`` (7 days).
- **Time** is the queue's clock: Redis's ``TIME`` for Redis, ``trio.current_time()``
  for memory. Timestamps in records are seconds on that clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from adapters import Payload
from config import QueuePolicy
from supervisors import LomashError

__all__ = [
    "STALL_ERROR_MESSAGE",
    "STALL_ERROR_TYPE",
    "AttemptRecord",
    "DeadJob",
    "FailOutcome",
    "Job",
    "JobQueue",
    "JobState",
    "Lease",
    "LeaseLost",
    "Payload",
    "QueuePolicy",
    "QueueStatistics",
    "RetryLater",
]

# The error a stalled attempt (its lease expired) is recorded with, in every queue.
STALL_ERROR_TYPE = "LeaseExpired"
STALL_ERROR_MESSAGE = "the lease expired before the job was completed"


class RetryLater(LomashError):
    """A handler's answer: not now, and not the job's fault (its dependency is down).

    The worker hands the job back for ``after_s`` without counting the attempt, so
    an outage of any length does not walk the job into the dead-letter queue."""

    def __init__(self, message: str, *, after_s: float) -> None:
        super().__init__(message)
        self.after_s = after_s


class LeaseLost(LomashError):
    """This worker's lease on the job is gone (expired, re-leased or released)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"lease on job {job_id!r} was lost")
        self.job_id = job_id


class JobState(StrEnum):
    WAITING = "waiting"  # deliverable now
    DELAYED = "delayed"  # waiting out a backoff or an enqueue delay
    ACTIVE = "active"  # leased to a worker
    COMPLETED = "completed"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    queue: str
    kind: str  # what to do: the worker dispatches on it
    payload: Payload
    attempt: int  # 1-based number of this delivery
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class Lease:
    job: Job
    token: str  # fencing token: unique per delivery
    expires_at: float


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    attempt: int
    started_at: float
    ended_at: float
    outcome: str  # "failed" | "stalled"
    error_type: str
    error_message: str


@dataclass(frozen=True, slots=True)
class DeadJob:
    job: Job
    history: tuple[AttemptRecord, ...]
    died_at: float
    # Histories of earlier lives, oldest first: each ``requeue_dead`` moves one here.
    previous: tuple[tuple[AttemptRecord, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class FailOutcome:
    dead: bool
    retry_in_s: float | None  # None when dead


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    queue: str
    waiting: int
    delayed: int
    active: int
    completed: int
    dead: int
    stalled_total: int  # deliveries that ended in an expired lease, ever
    # How long the next job to deliver has been waiting (None: nothing waits), on the
    # queue's clock.
    oldest_waiting_age_s: float | None = None


class JobQueue(Protocol):
    async def enqueue(
        self,
        queue: str,
        kind: str,
        payload: Payload,
        *,
        job_id: str | None = None,
        delay_s: float = 0.0,
    ) -> str:
        """Add a job (once per ``job_id``; a new id when None); returns its id."""
        ...

    async def lease(self, queue: str, *, worker: str, limit: int, wait_s: float) -> list[Lease]:
        """Up to ``limit`` jobs leased to ``worker``, waiting up to ``wait_s`` for the first.

        Before reading, delayed jobs that are due and jobs whose lease expired are made
        deliverable again (behind the jobs already waiting)."""
        ...

    async def heartbeat(self, lease: Lease) -> Lease:
        """Extend the lease by ``lease_s`` from now; ``LeaseLost`` if fenced off."""
        ...

    async def complete(self, lease: Lease) -> None:
        """The job is done; ``LeaseLost`` if fenced off (the work may be redone)."""
        ...

    async def fail(self, lease: Lease, *, error_type: str, error_message: str) -> FailOutcome:
        """The attempt failed: retry after a backoff, or dead-letter after the last."""
        ...

    async def release(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        """Hand the job back, not counting this attempt: at once (graceful shutdown),
        or deliverable again after ``delay_s`` (``RetryLater``: a dependency is down)."""
        ...

    async def dead(self, queue: str, *, limit: int) -> list[DeadJob]:
        """The dead-letter queue, most recent first."""
        ...

    async def dead_job(self, queue: str, job_id: str) -> DeadJob:
        """One dead job with its history; ``NotFound`` if absent."""
        ...

    async def requeue_dead(self, queue: str, job_id: str) -> None:
        """Deliver a dead job again with a fresh attempt count; ``NotFound`` if absent."""
        ...

    async def purge_dead(self, queue: str, job_id: str | None = None) -> int:
        """Delete one dead job (or all when None); returns how many."""
        ...

    async def trim(self, queue: str) -> int:
        """Forget completed and dead jobs past their retention; returns how many."""
        ...

    async def statistics(self, queue: str) -> QueueStatistics: ...

    async def state(self, queue: str, job_id: str) -> JobState | None:
        """Where the job is now; None if unknown (never enqueued, or trimmed)."""
        ...
