"""The recurring-job scheduler: cron schedules that enqueue jobs on the job queue.

A ``Scheduler`` is a supervised service (``run`` / ``request_stop``). For each
``Schedule`` it sleeps until the next tick, then enqueues the schedule's job with
the deterministic id ``cron:{name}:{tick in UTC, ISO 8601}``, for example
``cron:payment_reconciliation:2026-03-29T01:00:00+00:00``.

**Exactly once per tick, with no lease.** ``JobQueue.enqueue`` is idempotent per
``job_id``, so however many schedulers run at once (one per process, for
availability), each tick becomes one job: the first enqueue creates it, the others
are no-ops. No Redis lease or leader election is needed, and a scheduler that dies
mid-tick is replaced by any other without coordination.

**No memory of the last tick.** The scheduler stores nothing. On start it takes the
schedule's most recent tick (``previous_at_or_before(now)``) and, under
``MissedTicks.LATEST``, enqueues it: if that tick was already enqueued (by this
scheduler before a restart, or by another one) the enqueue is a no-op; if it was
missed while the process was down it runs now, once. Older missed ticks are not
replayed. The spec's two jobs (``spec_schedules``):

- *payment reconciliation*, 02:00 Europe/London daily, ``LATEST``: a night missed
  while the service was down is reconciled once on start (within ``catch_up_s``,
  24 h, so a tick is never caught up after the next one has come);
- *retry failed messages*, every 15 minutes, ``SKIP``: a missed tick is not worth
  running late, the next one comes within 15 minutes anyway.

**Enqueue failures** (the queue's dependency is down: ``DependencyError`` or
``Unavailable``) are logged and retried every ``retry_s``; a newer tick that falls
due meanwhile supersedes the failing one, and a tick older than ``catch_up_s`` is
given up. Any other error is a bug and crashes the scheduler (its supervisor
restarts it, and ``LATEST`` catches up).

**Time.** Ticks are wall-clock instants (``Clock.now()``, aware UTC); sleeping is on
trio's clock, for the wall-clock distance to the tick, at most ``resync_s`` at a
time so a stepped wall clock (NTP, a resumed VM) is noticed. In tests the clock is
``epoch + timedelta(seconds=trio.current_time())`` and everything runs in virtual
time. ``request_stop`` (``final`` or not: there is nothing to keep) wakes every
sleep at once; an enqueue in flight is finished first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog
import trio

from adapters import Payload
from config import SchedulerSettings
from jobs._cron import CronSchedule
from supervisors import DependencyError, Unavailable

__all__ = [
    "Clock",
    "JobSink",
    "MissedTicks",
    "Schedule",
    "Scheduler",
    "SchedulerSettings",
    "SystemClock",
    "spec_schedules",
]

LONDON = "Europe/London"
TICK_KEY = "scheduled_at"  # added to each job's payload: the tick, UTC ISO 8601


class MissedTicks(StrEnum):
    """What a schedule does on start about the tick it missed while down."""

    LATEST = "latest"  # enqueue the most recent tick (once) if within catch_up_s
    SKIP = "skip"  # enqueue nothing; wait for the next tick


@dataclass(frozen=True, slots=True)
class Schedule:
    """A job to enqueue at every tick of a cron expression (see ``jobs._cron``)."""

    name: str  # unique among a scheduler's schedules: part of every job id
    cron: str  # five fields, read in ``timezone``
    queue: str
    kind: str
    payload: Payload = field(default_factory=dict)
    missed: MissedTicks = MissedTicks.SKIP
    timezone: str = LONDON  # IANA name
    timetable: CronSchedule = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"name: {self.name!r} must be non-empty and free of ':'")
        if TICK_KEY in self.payload:
            raise ValueError(f"payload: {TICK_KEY!r} is set by the scheduler")
        object.__setattr__(self, "timetable", CronSchedule(self.cron, ZoneInfo(self.timezone)))

    def job_id(self, tick: datetime) -> str:
        return f"cron:{self.name}:{tick.astimezone(UTC).isoformat()}"


def spec_schedules() -> tuple[Schedule, ...]:
    """The spec's recurring jobs."""
    return (
        Schedule(
            name="payment_reconciliation",
            cron="0 2 * * *",
            queue="payments",
            kind="payments.reconcile",
            missed=MissedTicks.LATEST,
        ),
        Schedule(
            name="retry_failed_messages",
            cron="*/15 * * * *",
            queue="notifications",
            kind="notifications.retry_failed",
            missed=MissedTicks.SKIP,
        ),
    )


class JobSink(Protocol):
    """The part of ``adapters.JobQueue`` the scheduler uses (idempotent per job_id)."""

    async def enqueue(
        self,
        queue: str,
        kind: str,
        payload: Payload,
        *,
        job_id: str | None = None,
        delay_s: float = 0.0,
    ) -> str: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall-clock time, aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Scheduler:
    def __init__(
        self,
        schedules: Sequence[Schedule],
        jobs: JobSink,
        *,
        clock: Clock | None = None,
        settings: SchedulerSettings | None = None,
    ) -> None:
        names = [schedule.name for schedule in schedules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"schedules: names must be unique, repeated: {duplicates}")
        self._schedules = tuple(schedules)
        self._jobs = jobs
        self._clock = clock or SystemClock()
        self._settings = settings or SchedulerSettings()
        self._retry = timedelta(seconds=self._settings.retry_s)
        self._stop = trio.Event()
        self._log = structlog.get_logger("actors.scheduler")

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for schedule in self._schedules:
                nursery.start_soon(self._drive, schedule, name=f"schedule:{schedule.name}")
            task_status.started(self)

    def request_stop(self, *, final: bool) -> None:
        self._stop.set()

    async def _drive(self, schedule: Schedule) -> None:
        """Enqueue ``schedule``'s ticks until asked to stop."""
        timetable = schedule.timetable
        log = self._log.bind(schedule=schedule.name)
        now = self._clock.now()
        last = timetable.previous_at_or_before(now)
        due: datetime | None = last if self._catches_up(schedule, last, now) else None
        log.info("schedule_started", missed=schedule.missed.value, catch_up=due is not None)
        while not self._stop.is_set():
            if due is None:
                # Ticks that passed while this one was busy collapse into the newest.
                newest = timetable.previous_at_or_before(self._clock.now())
                due = max(timetable.next_after(last), newest)
                if not await self._sleep_until(due):
                    return
            if await self._enqueue(schedule, due, log):
                last, due = due, None
                continue
            if not await self._sleep_until(self._clock.now() + self._retry):
                return
            now = self._clock.now()
            due = max(due, timetable.previous_at_or_before(now))  # the newest supersedes
            if (now - due).total_seconds() > self._settings.catch_up_s:
                log.error("tick_abandoned", tick=due.isoformat(), job_id=schedule.job_id(due))
                last, due = due, None

    def _catches_up(self, schedule: Schedule, tick: datetime, now: datetime) -> bool:
        """Whether the tick at or before ``now`` is enqueued on start."""
        if tick == now:
            return True  # due right now, not missed
        age_s = (now - tick).total_seconds()
        return schedule.missed is MissedTicks.LATEST and age_s <= self._settings.catch_up_s

    async def _enqueue(self, schedule: Schedule, tick: datetime, log: Any) -> bool:
        """Enqueue ``tick``'s job; False (logged) if the queue is unavailable."""
        job_id = schedule.job_id(tick)
        payload: Mapping[str, Any] = {**schedule.payload, TICK_KEY: tick.isoformat()}
        try:
            await self._jobs.enqueue(schedule.queue, schedule.kind, payload, job_id=job_id)
        except (DependencyError, Unavailable) as error:
            log.warning(
                "tick_enqueue_failed",
                job_id=job_id,
                error=type(error).__name__,
                reason=str(error),
                retry_in_s=self._settings.retry_s,
            )
            return False
        late_s = (self._clock.now() - tick).total_seconds()
        log.info("tick_enqueued", job_id=job_id, queue=schedule.queue, late_s=late_s)
        return True

    async def _sleep_until(self, moment: datetime) -> bool:
        """Sleep until the wall clock reads ``moment``; False if asked to stop first."""
        while not self._stop.is_set():
            remaining_s = (moment - self._clock.now()).total_seconds()
            if remaining_s <= 0:
                return True
            wake_at = trio.current_time() + min(remaining_s, self._settings.resync_s)
            with trio.move_on_at(wake_at):
                await self._stop.wait()
        return False
