"""Dependency checks for /health and the readiness verdict /health/ready answers from.

A load balancer probes /health/ready every few seconds per instance, and anyone may
probe it as often as they like: a database round trip per probe would let a flood of
anonymous requests take the pool. ``Readiness`` keeps the last verdict for
``LOMASH_HEALTH_READY_MEMORY_S`` (1 s) and lets one probe at a time renew it; the
others wait for that check instead of making their own. A database going down is
seen within that bound (plus the check's own deadline, ``database_timeout_s``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import trio

from adapters import Cache, Database
from config import HealthSettings
from supervisors import ActorRef, BreakerState, LomashError

__all__ = ["Readiness", "database_readiness", "dependency_check", "ready_answer"]


async def dependency_check(
    dependency: Database | Cache, timeout_s: float, guards: Sequence[ActorRef[Any, Any]] = ()
) -> str:
    """ "ok", or why not: an open breaker of an actor that ``guards`` it, a gate
    that refuses (never pinged: nobody waits for a dependency known to be down or
    slow), a ping that fails or does not answer in time."""
    for ref in guards:
        breaker = ref.statistics().breaker
        if breaker is not None and breaker.state is BreakerState.OPEN:
            return f"error: breaker open ({ref.name})"
    if (reason := dependency.outage()) is not None:
        return f"error: {reason}"
    with trio.move_on_after(timeout_s):
        try:
            await dependency.ping()
        except LomashError as error:
            return f"error: {dependency.outage() or error.message}"
        reason = dependency.outage()
        return "ok" if reason is None else f"error: {reason}"
    return f"error: no answer within {timeout_s:g} s"


class Readiness:
    """The database's verdict for readiness, at most ``memory_s`` old."""

    def __init__(self, check: Callable[[], Awaitable[str]], memory_s: float) -> None:
        self._check = check
        self._memory_s = memory_s
        self._verdict: str | None = None
        self._checked_at = -float("inf")
        self._checking: trio.Event | None = None
        self.checks = 0  # how many checks were made (the rest were answered from memory)

    async def database(self) -> str:
        """ "ok", or why the database is not usable (``dependency_check``'s words)."""
        asked = trio.current_time()
        while True:
            verdict, checked_at = self._verdict, self._checked_at
            if verdict is not None and (
                trio.current_time() - checked_at < self._memory_s or checked_at >= asked
            ):
                return verdict
            if self._checking is None:
                return await self._renew()
            await self._checking.wait()  # another probe checks: its verdict is ours

    async def _renew(self) -> str:
        checking = self._checking = trio.Event()
        started = trio.current_time()
        try:
            verdict = await self._check()
            self.checks += 1
            self._verdict, self._checked_at = verdict, started
            return verdict
        finally:
            self._checking = None
            checking.set()


def database_readiness(
    database: Database, settings: HealthSettings, guards: Sequence[ActorRef[Any, Any]]
) -> Readiness:
    """Readiness on ``database``, whose usability ``guards`` (actors with a breaker on
    it) also speak for."""
    return Readiness(
        partial(dependency_check, database, settings.database_timeout_s, guards),
        settings.ready_memory_s,
    )


def ready_answer(draining: bool, database: str | None) -> tuple[int, dict[str, Any]]:
    """/health/ready's status and document (``database``: the verdict, unless draining)."""
    if draining:
        return 503, {"status": "draining"}
    if database != "ok":
        return 503, {"status": "unready", "checks": {"database": database}}
    return 200, {"status": "ready"}
