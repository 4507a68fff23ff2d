"""Job workers: supervised services that lease jobs and hand each to its domain actor.

A worker leases at most ``concurrency`` jobs at a time from one queue and asks the
actor that owns the job's ``kind`` to do it (``RunJob``), so the domain actor's
mailbox policies (breaker, bulkhead, timeouts) apply to background work too. While a
job runs, a separate task heartbeats its lease; if the lease is lost (fenced off,
e.g. after a long Redis outage the job was re-leased elsewhere) the job is cancelled
here rather than finishing twice in parallel.

Outcomes: the actor's reply completes the job; a ``LomashError`` (or ``ActorCrashed``)
fails the attempt: the queue retries with backoff, or dead-letters it after the last
attempt and an alert goes out. The worker crashing (a bug here) is a crash like any
other: its supervisor restarts it and its leases expire and are redelivered.

Shutdown: ``request_stop`` stops leasing (within one ``poll_s``); running jobs finish
within the worker's shutdown budget (the drain timeout); a job still running after
that is cancelled and its lease handed back at once (``release``), so another task
picks it up without waiting for the lease to expire.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from config import JobSettings
from jobs._alerts import DeadLetterAlerts
from jobs._queue import Job, JobQueue, Lease, LeaseLost, RetryLater
from supervisors import ActorCrashed, ActorRef, LomashError

__all__ = ["JobWorker", "RunJob", "WorkerStatistics"]

log = structlog.get_logger("actors.worker")


@dataclass(frozen=True, slots=True)
class RunJob:
    """Do this job (its ``id`` is the key for recording effects once)."""

    job: Job


type Handlers = Mapping[str, ActorRef[RunJob, Any]]


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    name: str
    running: int
    completed: int
    failed: int
    dead: int
    released: int
    lost: int
    deferred: int  # handed back by RetryLater, uncounted


class JobWorker:
    def __init__(
        self,
        name: str,
        queue: JobQueue,
        queue_name: str,
        handlers: Callable[[], Handlers],
        settings: JobSettings,
        alerts: DeadLetterAlerts,
        *,
        cleanup_s: float,
    ) -> None:
        self.name = name
        self._queue = queue
        self._queue_name = queue_name
        self._handlers = handlers
        self._settings = settings
        self._alerts = alerts
        self._cleanup_s = cleanup_s
        self._stopping = False
        self._running = 0
        self._completed = self._failed = self._dead = self._released = self._lost = 0
        self._deferred = 0

    def request_stop(self, *, final: bool) -> None:
        self._stopping = True

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            name=self.name,
            running=self._running,
            completed=self._completed,
            failed=self._failed,
            dead=self._dead,
            released=self._released,
            lost=self._lost,
            deferred=self._deferred,
        )

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        slots = trio.Semaphore(self._settings.concurrency)
        async with trio.open_nursery() as jobs:
            task_status.started(self)
            while not self._stopping:
                await slots.acquire()
                extra = 0
                while extra < self._settings.concurrency - 1:
                    try:
                        slots.acquire_nowait()
                    except trio.WouldBlock:
                        break
                    extra += 1
                try:
                    leases = await self._queue.lease(
                        self._queue_name,
                        worker=self.name,
                        limit=1 + extra,
                        wait_s=self._settings.poll_s,
                    )
                except LomashError as error:  # the queue is down: look again after a poll
                    log.warning("job_lease_failed", queue=self._queue_name, error=error.message)
                    leases = []
                    await trio.sleep(self._settings.poll_s)
                for _ in range(1 + extra - len(leases)):
                    slots.release()
                for lease in leases:
                    if self._stopping:
                        await self._hand_back(lease)
                        slots.release()
                    else:
                        jobs.start_soon(self._run_job, lease, slots)

    async def _run_job(self, lease: Lease, slots: trio.Semaphore) -> None:
        job = lease.job
        self._running += 1
        try:
            with structlog.contextvars.bound_contextvars(job_id=job.id, kind=job.kind):
                holder = [lease]
                failure: list[tuple[str, str] | RetryLater | None] = []
                async with trio.open_nursery() as guard:
                    guard.start_soon(self._heartbeat, holder, guard.cancel_scope)
                    try:
                        failure.append(await self._ask(job))
                    except trio.Cancelled:
                        if holder:  # not fenced off: give it to another worker now
                            await self._hand_back(holder[0])
                        raise
                    guard.cancel_scope.cancel()
                # The heartbeat has stopped: it cannot race the outcome being recorded.
                if failure and holder:
                    await self._record(holder[0], failure[0])
        finally:
            self._running -= 1
            slots.release()

    async def _heartbeat(self, holder: list[Lease], job_scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(self._settings.heartbeat_s)
            try:
                holder[0] = await self._queue.heartbeat(holder[0])
            except LeaseLost:
                self._lost += 1
                log.warning("job_lease_lost", queue=self._queue_name)
                holder.clear()
                job_scope.cancel()  # fenced off: stop working on it here
                return
            except LomashError as error:  # the queue is unreachable: keep trying
                log.warning("job_heartbeat_failed", error=error.message)

    async def _ask(self, job: Job) -> tuple[str, str] | RetryLater | None:
        """Have the owning actor do the job: None if it did, ``RetryLater`` if it asks
        for that, else (error type, message)."""
        handler = self._handlers().get(job.kind)
        try:
            if handler is None:
                raise ActorCrashed(f"no-handler:{job.kind}", error_type="UnknownJobKind")
            await handler.ask(RunJob(job))
        except RetryLater as later:
            return later
        except LomashError as error:
            return type(error).__name__, error.message
        return None

    async def _record(self, lease: Lease, failure: tuple[str, str] | RetryLater | None) -> None:
        if isinstance(failure, RetryLater):
            await self._retry_later(lease, failure)
            return
        if failure is not None:
            await self._fail(lease, *failure)
            return
        try:
            await self._queue.complete(lease)
        except LeaseLost:
            self._lost += 1
            log.warning("job_lease_lost_at_completion", queue=self._queue_name)
        except LomashError as error:
            # Not recorded: the lease expires and the job runs again, which is why
            # handlers record their effects once (record_effect_once, provider keys).
            log.warning("job_completion_not_recorded", error=error.message)
        else:
            self._completed += 1
            log.info("job_completed", queue=self._queue_name, attempt=lease.job.attempt)

    async def _retry_later(self, lease: Lease, later: RetryLater) -> None:
        """Hand the job back for ``after_s``, its attempt not counted."""
        try:
            await self._queue.release(lease, delay_s=later.after_s)
        except LeaseLost:
            self._lost += 1
            return
        except LomashError as error:  # not recorded: the lease expires, it runs again
            log.warning("job_retry_later_not_recorded", error=error.message)
            return
        self._deferred += 1
        log.info(
            "job_retry_later", queue=self._queue_name, reason=later.message, in_s=later.after_s
        )

    async def _fail(self, lease: Lease, error_type: str, message: str) -> None:
        job = lease.job
        try:
            outcome = await self._queue.fail(lease, error_type=error_type, error_message=message)
        except LeaseLost:
            self._lost += 1
            log.warning("job_lease_lost_at_failure", queue=self._queue_name)
            return
        except LomashError as failure:
            log.warning("job_failure_not_recorded", error=failure.message)
            return
        self._failed += 1
        log.warning(
            "job_failed",
            queue=self._queue_name,
            attempt=job.attempt,
            error_type=error_type,
            retry_in_s=outcome.retry_in_s,
        )
        if outcome.dead:
            self._dead += 1
            await self._alerts.dead_lettered(job, error_type=error_type, error_message=message)

    async def _hand_back(self, lease: Lease) -> None:
        with trio.move_on_after(self._cleanup_s, shield=True):
            with contextlib.suppress(LomashError):
                await self._queue.release(lease)
                self._released += 1
                log.info("job_handed_back", queue=self._queue_name, job_id=lease.job.id)
