"""The jobs part of the tree: a worker per queue this process works on, the outbox
relay, the trimmer (queues and idempotency keys), the cron scheduler."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from adapters import Database, PostgresBookingStore
from config import Settings
from jobs import (
    DeadLetterAlerts,
    JobQueue,
    JobWorker,
    OutboxRelay,
    QueueTrimmer,
    RunJob,
    Scheduler,
    spec_schedules,
)
from supervisors import ActorRef, ChildSpec, Holder, SupervisorSpec, TaskSpec

__all__ = ["jobs_tree"]


def jobs_tree(
    settings: Settings,
    database: Holder[Database],
    queue: Callable[[], JobQueue],
    handlers: dict[str, ActorRef[RunJob, Any]],
    alerts: DeadLetterAlerts,
) -> SupervisorSpec:
    """Workers for this process's queues, the outbox relay, the scheduler, trimming."""
    jobs = settings.jobs
    schedules = [s for s in spec_schedules() if s.kind in handlers]
    keep_s = settings.booking.idempotency_keep_s

    async def trim_keys() -> int:
        return await PostgresBookingStore(database.value).forget_keys(keep_s)

    children: list[ChildSpec] = [
        TaskSpec("outbox-relay", lambda: OutboxRelay(database.value, queue(), settings.outbox)),
        TaskSpec(
            "trimmer",
            lambda: QueueTrimmer(
                queue(),
                jobs.queue_names(),
                every_s=jobs.trim_every_s,
                also=[("idempotency_keys", trim_keys)],
            ),
        ),
    ]
    if schedules:
        children.append(
            TaskSpec(
                "scheduler", lambda: Scheduler(schedules, queue(), settings=settings.scheduler)
            )
        )

    def worker(name: str) -> TaskSpec:
        return TaskSpec(
            f"worker-{name}",
            lambda: JobWorker(
                f"{name}@{os.getpid()}",
                queue(),
                name,
                lambda: handlers,
                jobs,
                alerts,
                cleanup_s=settings.cleanup_timeout_s,
            ),
            # Running jobs get the drain budget; then they are handed back.
            shutdown_s=settings.drain_timeout_s,
        )

    children.extend(worker(name) for name in jobs.queue_names())
    return SupervisorSpec("jobs", children, restarts=settings.runtime.restart)
