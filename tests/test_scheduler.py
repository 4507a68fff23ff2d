"""The scheduler: ticks at exact virtual times, once each, missed ticks, failures, stop."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing

from adapters import Payload
from config import SchedulerSettings
from jobs._scheduler import MissedTicks, Schedule, Scheduler, spec_schedules
from supervisors import ConnectionLost

RECONCILE, RETRY_FAILED = spec_schedules()


@dataclass(frozen=True, slots=True)
class WallClock:
    """Wall-clock time that is ``epoch`` at virtual time 0 and runs with trio's clock."""

    epoch: datetime

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=trio.current_time())


@dataclass(frozen=True, slots=True)
class Call:
    at: float  # virtual time
    job_id: str
    queue: str
    kind: str
    payload: Payload


@dataclass
class Recorder:
    """The enqueue side of a job queue: records every call, keeps each job_id once.

    While virtual time is before ``down_until`` every enqueue fails (queue down).
    """

    down_until: float = 0.0
    calls: list[Call] = field(default_factory=list)
    jobs: dict[str, Call] = field(default_factory=dict)  # accepted, first per job_id

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
        assert job_id is not None
        call = Call(trio.current_time(), job_id, queue, kind, payload)
        self.calls.append(call)
        if call.at < self.down_until:
            raise ConnectionLost("job queue is down", dependency="redis")
        self.jobs.setdefault(job_id, call)
        return job_id

    def accepted(self) -> list[tuple[float, str]]:
        return sorted((call.at, call.job_id) for call in self.jobs.values())

    def attempted(self) -> list[tuple[float, str]]:
        return sorted((call.at, call.job_id) for call in self.calls)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def job(schedule: Schedule, tick: datetime) -> str:
    return f"cron:{schedule.name}:{tick.isoformat()}"


async def run_for(duration_s: float, *schedulers: Scheduler) -> None:
    """Run the schedulers side by side for ``duration_s`` virtual seconds, then stop them."""
    with trio.fail_after(duration_s + 1.0):
        async with trio.open_nursery() as nursery:
            for scheduler in schedulers:
                await nursery.start(scheduler.run)
            await trio.sleep(duration_s)
            for scheduler in schedulers:
                scheduler.request_stop(final=True)


def scheduler(
    recorder: Recorder, epoch: datetime, *schedules: Schedule, **settings: float
) -> Scheduler:
    return Scheduler(
        schedules, recorder, clock=WallClock(epoch), settings=SchedulerSettings(**settings)
    )


HOUR = 3600.0


async def test_nightly_ticks_land_at_exact_times_across_spring_forward(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """02:00 London is 02:00 UTC before 29 March 2026 and 01:00 UTC from then on."""
    recorder = Recorder()
    await run_for(62 * HOUR, scheduler(recorder, utc(2026, 3, 27, 12), RECONCILE))
    assert recorder.attempted() == [
        (0.0, job(RECONCILE, utc(2026, 3, 27, 2))),  # LATEST: last night's, on start
        (14 * HOUR, job(RECONCILE, utc(2026, 3, 28, 2))),  # GMT
        (37 * HOUR, job(RECONCILE, utc(2026, 3, 29, 1))),  # BST
        (61 * HOUR, job(RECONCILE, utc(2026, 3, 30, 1))),
    ]


async def test_quarter_hour_and_nightly_ticks_across_fall_back_each_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """25 October 2026: */15 pauses for the repeated hour; 02:00 GMT is 02:00 UTC."""
    recorder = Recorder()
    await run_for(7000.0, scheduler(recorder, utc(2026, 10, 25, 0, 20), *spec_schedules()))
    assert recorder.attempted() == [
        (0.0, job(RECONCILE, utc(2026, 10, 24, 1))),  # 23 h 20 min late: caught up
        (600.0, job(RETRY_FAILED, utc(2026, 10, 25, 0, 30))),  # 01:30 BST
        (1500.0, job(RETRY_FAILED, utc(2026, 10, 25, 0, 45))),  # 01:45 BST
        (6000.0, job(RECONCILE, utc(2026, 10, 25, 2))),  # 02:00 GMT
        (6000.0, job(RETRY_FAILED, utc(2026, 10, 25, 2))),
        (6900.0, job(RETRY_FAILED, utc(2026, 10, 25, 2, 15))),
    ]


async def test_quarter_hour_ticks_every_900_s_through_a_day_with_a_dst_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Across 29 March 2026 the */15 ticks are exactly 900 s apart, none twice."""
    recorder = Recorder()
    epoch = utc(2026, 3, 28, 12, 5)
    await run_for(24 * HOUR, scheduler(recorder, epoch, RETRY_FAILED))
    expected = [600.0 + 900.0 * n for n in range(96)]
    assert recorder.attempted() == [
        (at, job(RETRY_FAILED, epoch + timedelta(seconds=at))) for at in expected
    ]


async def test_two_schedulers_at_once_enqueue_each_tick_exactly_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Both try every tick; the queue's job_id idempotency keeps one job per tick."""
    recorder = Recorder()
    epoch = utc(2026, 10, 25, 0, 20)
    await run_for(
        7000.0,
        scheduler(recorder, epoch, *spec_schedules()),
        scheduler(recorder, epoch, *spec_schedules()),
    )
    assert recorder.accepted() == [
        (0.0, job(RECONCILE, utc(2026, 10, 24, 1))),
        (600.0, job(RETRY_FAILED, utc(2026, 10, 25, 0, 30))),
        (1500.0, job(RETRY_FAILED, utc(2026, 10, 25, 0, 45))),
        (6000.0, job(RECONCILE, utc(2026, 10, 25, 2))),
        (6000.0, job(RETRY_FAILED, utc(2026, 10, 25, 2))),
        (6900.0, job(RETRY_FAILED, utc(2026, 10, 25, 2, 15))),
    ]
    assert len(recorder.calls) == 2 * len(recorder.jobs)


async def test_latest_enqueues_the_missed_tick_once_on_start_and_again_as_a_no_op(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Started at 08:00, LATEST enqueues 01:00 UTC's tick; a restart's enqueue is a no-op."""
    recorder = Recorder()
    epoch = utc(2026, 6, 10, 8)
    await run_for(HOUR, scheduler(recorder, epoch, RECONCILE))
    await run_for(HOUR, scheduler(recorder, epoch, RECONCILE))
    tick = job(RECONCILE, utc(2026, 6, 10, 1))
    assert recorder.attempted() == [(0.0, tick), (HOUR, tick)]
    assert recorder.jobs == {
        tick: Call(
            0.0,
            tick,
            "payments",
            "payments.reconcile",
            {"scheduled_at": "2026-06-10T01:00:00+00:00"},
        )
    }


async def test_latest_leaves_a_missed_tick_older_than_catch_up_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A tick 7 h old is not caught up when catch_up_s is 6 h; the next one runs."""
    recorder = Recorder()
    await run_for(
        18 * HOUR, scheduler(recorder, utc(2026, 6, 10, 8), RECONCILE, catch_up_s=6 * HOUR)
    )
    assert recorder.attempted() == [(17 * HOUR, job(RECONCILE, utc(2026, 6, 11, 1)))]


async def test_skip_enqueues_no_missed_tick_on_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Started at 08:05, SKIP leaves 08:00 alone and enqueues 08:15 on time."""
    recorder = Recorder()
    await run_for(700.0, scheduler(recorder, utc(2026, 6, 10, 8, 5), RETRY_FAILED))
    assert recorder.attempted() == [(600.0, job(RETRY_FAILED, utc(2026, 6, 10, 8, 15)))]


async def test_a_tick_due_at_start_is_enqueued_whatever_the_policy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Starting exactly on a tick is not missing it: SKIP enqueues it at once."""
    recorder = Recorder()
    await run_for(100.0, scheduler(recorder, utc(2026, 6, 10, 8, 15), RETRY_FAILED))
    assert recorder.attempted() == [(0.0, job(RETRY_FAILED, utc(2026, 6, 10, 8, 15)))]


async def test_a_failed_enqueue_is_retried_after_retry_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The queue is down for 608 s: 08:15's tick is tried at 600, 605, 610 s and lands."""
    recorder = Recorder(down_until=608.0)
    await run_for(1600.0, scheduler(recorder, utc(2026, 6, 10, 8, 5), RETRY_FAILED, retry_s=5.0))
    at_0815 = job(RETRY_FAILED, utc(2026, 6, 10, 8, 15))
    at_0830 = job(RETRY_FAILED, utc(2026, 6, 10, 8, 30))
    assert recorder.attempted() == [
        (600.0, at_0815),
        (605.0, at_0815),
        (610.0, at_0815),
        (1500.0, at_0830),
    ]
    assert recorder.accepted() == [(610.0, at_0815), (1500.0, at_0830)]


async def test_a_newer_tick_supersedes_one_still_failing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Down until 1600 s: 08:15 is retried until 08:30 falls due, then 08:30 lands alone."""
    recorder = Recorder(down_until=1600.0)
    await run_for(2500.0, scheduler(recorder, utc(2026, 6, 10, 8, 5), RETRY_FAILED, retry_s=300.0))
    at_0815, at_0830, at_0845 = (
        job(RETRY_FAILED, utc(2026, 6, 10, 8, minute)) for minute in (15, 30, 45)
    )
    assert recorder.attempted() == [
        (600.0, at_0815),
        (900.0, at_0815),
        (1200.0, at_0815),
        (1500.0, at_0830),
        (1800.0, at_0830),
        (2400.0, at_0845),
    ]
    assert recorder.accepted() == [(1800.0, at_0830), (2400.0, at_0845)]


async def test_a_tick_failing_longer_than_catch_up_s_is_given_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With catch_up_s 600 the 01:00 tick is tried at 300, 600, 900 s and then dropped."""
    recorder = Recorder(down_until=math.inf)
    await run_for(
        2000.0,
        scheduler(recorder, utc(2026, 6, 10, 0, 55), RECONCILE, retry_s=300.0, catch_up_s=600.0),
    )
    tick = job(RECONCILE, utc(2026, 6, 10, 1))
    assert recorder.attempted() == [(300.0, tick), (600.0, tick), (900.0, tick)]
    assert recorder.jobs == {}


@pytest.mark.parametrize(("down_until", "stop_at"), [(0.0, 100.0), (math.inf, 700.0)])
async def test_request_stop_ends_run_at_once_while_sleeping_or_backing_off(
    autojump_clock: trio.testing.MockClock, down_until: float, stop_at: float
) -> None:
    """Waiting for a tick (100 s) or for a retry (700 s), run() returns at the stop."""
    recorder = Recorder(down_until=down_until)
    service = scheduler(recorder, utc(2026, 6, 10, 8, 5), RETRY_FAILED, retry_s=3600.0)
    with trio.fail_after(stop_at + 1.0):
        async with trio.open_nursery() as nursery:
            started: Any = await nursery.start(service.run)
            assert started is service
            await trio.sleep(stop_at)
            service.request_stop(final=False)
    assert trio.current_time() == stop_at


def test_spec_schedules_are_the_nightly_reconciliation_and_the_quarter_hour_retry() -> None:
    """The spec's two jobs, their queues, kinds and missed-tick policies."""
    assert [
        (s.name, s.cron, s.timezone, s.queue, s.kind, s.missed, dict(s.payload))
        for s in spec_schedules()
    ] == [
        (
            "payment_reconciliation",
            "0 2 * * *",
            "Europe/London",
            "payments",
            "payments.reconcile",
            MissedTicks.LATEST,
            {},
        ),
        (
            "retry_failed_messages",
            "*/15 * * * *",
            "Europe/London",
            "notifications",
            "notifications.retry_failed",
            MissedTicks.SKIP,
            {},
        ),
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Schedule("x", "0 25 * * *", "q", "k"), "hour: 25 is out of range 0-23"),
        (lambda: Schedule("a:b", "* * * * *", "q", "k"), "name: 'a:b' must be non-empty"),
        (
            lambda: Schedule("x", "* * * * *", "q", "k", {"scheduled_at": "now"}),
            "payload: 'scheduled_at' is set by the scheduler",
        ),
        (
            lambda: Scheduler([RECONCILE, RECONCILE], Recorder()),
            r"schedules: names must be unique, repeated: \['payment_reconciliation'\]",
        ),
        (lambda: SchedulerSettings(retry_s=0.0), "retry_s: must be > 0"),
    ],
)
def test_bad_schedules_are_refused_at_construction(
    make: Callable[[], object], message: str
) -> None:
    """A bad cron, name, payload, duplicate or setting raises ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        make()
