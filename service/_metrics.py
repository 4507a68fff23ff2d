"""The metrics a process serves, wired to its tree: its actors, the Postgres and
Redis gates, the job queues and the outbox, the account guard's counters."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from adapters import Cache, Database, notification_outcomes, outbox_backlog
from config import Settings
from gateway._auth import AccountGuard
from gateway._metrics import OLDEST, ServiceMetrics
from jobs import JobQueue
from supervisors import ActorRef

__all__ = ["MULTIPROCESS_DIR", "registries", "service_metrics"]

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def registries() -> tuple[CollectorRegistry, CollectorRegistry | None]:
    """(what /metrics renders, where metric objects register). With ``--workers N``
    the parent sets PROMETHEUS_MULTIPROC_DIR: counters and histograms then live in
    files there, and any worker's scrape adds every worker's up."""
    exposition = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_DIR):
        MultiProcessCollector(exposition)  # type: ignore[no-untyped-call]
        return exposition, None
    return exposition, exposition


def service_metrics(
    registry: CollectorRegistry,
    objects: CollectorRegistry | None,
    settings: Settings,
    actors: Sequence[ActorRef[Any, Any]],
    database: Database,
    cache: Cache,
    jobs: JobQueue,
    guard: AccountGuard,
) -> ServiceMetrics:
    queues = settings.jobs.service_queues()

    async def queue_counts() -> dict[str, dict[str, float]]:
        counts: dict[str, dict[str, float]] = {}
        for name in queues:
            s = await jobs.statistics(name)
            counts[name] = {
                "waiting": s.waiting,
                "active": s.active,
                "delayed": s.delayed,
                "dead": s.dead,
            }
            if s.oldest_waiting_age_s is not None:
                counts[name][OLDEST] = s.oldest_waiting_age_s
        return counts

    async def backlogs() -> dict[str, int]:
        return await outbox_backlog(database)

    async def notifications() -> dict[tuple[str, str, str], int]:
        return await notification_outcomes(database)

    def gates() -> list[tuple[str, Any]]:
        return [("postgres", database.statistics().primary), ("redis", cache.statistics())]

    def counts() -> dict[str, int]:
        return {
            "lomash_rate_limit_fail_open": guard.limiter.fail_open,
            "lomash_session_checks_skipped": guard.unchecked,
        }

    return ServiceMetrics(
        registry,
        objects=objects,
        worker=str(os.getpid()) if objects is None else None,
        actors=actors,
        gates=gates,
        counts=counts,
        queues=queue_counts,
        backlogs=backlogs,
        notifications=notifications,
    )
