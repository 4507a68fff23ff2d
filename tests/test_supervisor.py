"""Supervisors: start order, reverse shutdown, strategies, restart types, intensity."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from config import RestartSettings
from supervisors import (
    ActorUnavailable,
    ChildStartFailed,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorSpec,
    TaskSpec,
    open_supervisor,
)
from tests._behaviours import Journal, Workers, no_jitter

IMMEDIATE = RestartSettings(max_restarts=10, within_s=60.0, backoff_min_s=0.0)


def three(workers: Workers, strategy: Strategy) -> SupervisorSpec:
    return SupervisorSpec(
        "root",
        [workers.spec("a"), workers.spec("b"), workers.spec("c")],
        strategy=strategy,
        restarts=IMMEDIATE,
    )


async def test_children_start_in_order_and_stop_in_reverse_within_their_timeouts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each child is ready before the next starts; stop is reverse, graceful, then cancel."""
    journal = Journal()
    workers = Workers(journal)
    spec = SupervisorSpec(
        "root",
        [
            workers.spec("a", start_s=1.0),
            workers.spec("b", start_s=2.0, ignore_stop=True, shutdown_s=3.0),
            workers.spec("c", start_s=1.0),
        ],
    )
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(spec.create().run)
        assert trio.current_time() == 4.0
        supervisor.request_stop(final=True)
    assert journal.entries == [
        (1.0, "a up"),
        (3.0, "b up"),
        (4.0, "c up"),
        (4.0, "c asked to stop"),
        (4.0, "c down"),
        (4.0, "b asked to stop"),
        (7.0, "b cancelled"),
        (7.0, "a asked to stop"),
        (7.0, "a down"),
    ]


async def test_one_for_one_restarts_only_the_crashed_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """one_for_one: the siblings of a crashed child keep running untouched."""
    journal = Journal()
    workers = Workers(journal)
    async with open_supervisor(three(workers, Strategy.ONE_FOR_ONE)) as supervisor:
        a, c = workers.latest["a"], workers.latest["c"]
        journal.entries.clear()
        workers.latest["b"].crash()
        await wait_all_tasks_blocked()
        assert journal.events() == ["b up"]
        assert workers.latest["a"] is a
        assert workers.latest["c"] is c
        assert supervisor.statistics().restarts == 1
        assert supervisor.statistics().running == ("a", "b", "c")


async def test_one_for_all_stops_the_others_in_reverse_then_restarts_all_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """one_for_all: every child is stopped (reverse) and started again (in order)."""
    journal = Journal()
    workers = Workers(journal)
    async with open_supervisor(three(workers, Strategy.ONE_FOR_ALL)):
        journal.entries.clear()
        workers.latest["b"].crash()
        await wait_all_tasks_blocked()
        assert journal.events() == [
            "c asked to stop",
            "c down",
            "a asked to stop",
            "a down",
            "a up",
            "b up",
            "c up",
        ]


async def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rest_for_one: children started before the crashed one are left alone."""
    journal = Journal()
    workers = Workers(journal)
    async with open_supervisor(three(workers, Strategy.REST_FOR_ONE)):
        a = workers.latest["a"]
        journal.entries.clear()
        workers.latest["b"].crash()
        await wait_all_tasks_blocked()
        assert journal.events() == ["c asked to stop", "c down", "b up", "c up"]
        assert workers.latest["a"] is a


@pytest.mark.parametrize(
    ("restart", "crash", "restarted"),
    [
        (Restart.PERMANENT, True, True),
        (Restart.PERMANENT, False, True),
        (Restart.TRANSIENT, True, True),
        (Restart.TRANSIENT, False, False),
        (Restart.TEMPORARY, True, False),
        (Restart.TEMPORARY, False, False),
    ],
)
async def test_restart_type_decides_whether_an_ended_child_comes_back(
    autojump_clock: trio.testing.MockClock, restart: Restart, crash: bool, restarted: bool
) -> None:
    """permanent always restarts, transient only after a crash, temporary never."""
    journal = Journal()
    workers = Workers(journal)
    spec = SupervisorSpec("root", [workers.spec("x", restart=restart)], restarts=IMMEDIATE)
    async with open_supervisor(spec) as supervisor:
        journal.entries.clear()
        worker = workers.latest["x"]
        if crash:
            worker.crash()
        else:
            worker.finish()
        await wait_all_tasks_blocked()
        stats = supervisor.statistics()
        if restarted:
            assert journal.events() == ([] if crash else ["x down"]) + ["x up"]
            assert stats.children == ("x",)
            assert stats.restarts == 1
        else:
            assert journal.events() == ([] if crash else ["x down"])
            assert stats.children == ()
            assert stats.restarts == 0


async def test_too_many_restarts_stop_every_child_and_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """More than max_restarts within within_s: children stop and the supervisor fails."""
    journal = Journal()
    workers = Workers(journal)
    spec = SupervisorSpec(
        "root",
        [workers.spec("a"), workers.spec("b")],
        restarts=RestartSettings(max_restarts=2, within_s=10.0, backoff_min_s=0.0),
    )
    with pytest.RaisesGroup(
        pytest.RaisesExc(RestartIntensityExceeded, match="more than 2 restarts within 10.0 s")
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(spec.create().run)
            for _ in range(3):
                await trio.sleep(1.0)
                workers.latest["b"].crash()
            await trio.sleep_forever()
    assert trio.current_time() == 3.0
    assert journal.events()[-3:] == ["b up", "a asked to stop", "a down"]
    assert journal.events().count("b up") == 3  # the first start and two restarts


async def test_restarts_spread_wider_than_the_window_never_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Intensity counts restarts inside the rolling window only."""
    journal = Journal()
    workers = Workers(journal)
    spec = SupervisorSpec(
        "root",
        [workers.spec("a")],
        restarts=RestartSettings(max_restarts=2, within_s=10.0, backoff_min_s=0.0),
    )
    async with open_supervisor(spec) as supervisor:
        for _ in range(6):
            await trio.sleep(6.0)
            workers.latest["a"].crash()
            await wait_all_tasks_blocked()
        assert supervisor.statistics().restarts == 6
        assert supervisor.statistics().escalations == 0


class Flaky:
    """Journals its start, lives ``life_s``, then crashes (or lives forever when None)."""

    def __init__(self, journal: Journal, life_s: float | None) -> None:
        self.journal = journal
        self.life_s = life_s

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.journal.add("up")
        task_status.started()
        if self.life_s is None:
            await trio.sleep_forever()
        await trio.sleep(self.life_s)
        raise RuntimeError("flaky")

    def request_stop(self, *, final: bool) -> None:
        pass


def flaky_spec(journal: Journal, lives: list[float | None]) -> TaskSpec:
    remaining = iter(lives)
    return TaskSpec("flaky", lambda: Flaky(journal, next(remaining, None)), shutdown_s=0.0)


BACKOFF = RestartSettings(
    max_restarts=100,
    within_s=1000.0,
    backoff_min_s=0.1,
    backoff_max_s=0.5,
    backoff_factor=2.0,
    backoff_jitter=0.2,
    backoff_reset_s=60.0,
)


async def test_consecutive_restarts_back_off_exponentially_up_to_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """First restart immediate, then 0.1, 0.2, 0.4 s, capped at 0.5 s."""
    journal = Journal()
    spec = SupervisorSpec(
        "root", [flaky_spec(journal, [0.0] * 6)], restarts=BACKOFF, jitter=no_jitter
    )
    async with open_supervisor(spec):
        await trio.sleep(10.0)
    starts = [t for t, _ in journal.entries]
    assert starts == pytest.approx([0.0, 0.0, 0.1, 0.3, 0.7, 1.2, 1.7], abs=1e-9)


async def test_backoff_jitter_spreads_each_delay_by_its_fraction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With +20 % jitter drawn, the delays are 0.12, 0.24, 0.48, 0.6 s."""
    journal = Journal()
    spec = SupervisorSpec(
        "root",
        [flaky_spec(journal, [0.0] * 5)],
        restarts=BACKOFF,
        jitter=lambda low, high: high,
    )
    async with open_supervisor(spec):
        await trio.sleep(10.0)
    starts = [t for t, _ in journal.entries]
    assert starts == pytest.approx([0.0, 0.0, 0.12, 0.36, 0.84, 1.44], abs=1e-9)


async def test_backoff_starts_from_scratch_after_a_stable_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child that ran backoff_reset_s without crashing is restarted at once again."""
    journal = Journal()
    spec = SupervisorSpec(
        "root", [flaky_spec(journal, [0.0, 0.0, 70.0, 0.0])], restarts=BACKOFF, jitter=no_jitter
    )
    async with open_supervisor(spec):
        await trio.sleep(100.0)
    starts = [t for t, _ in journal.entries]
    assert starts == pytest.approx([0.0, 0.0, 0.1, 70.1, 70.2], abs=1e-9)


async def test_stop_during_backoff_does_not_wait_for_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stop request cuts a pending restart delay short."""
    journal = Journal()
    slow = RestartSettings(max_restarts=100, within_s=1000.0, backoff_min_s=20.0)
    spec = SupervisorSpec("root", [flaky_spec(journal, [0.0, 0.0])], restarts=slow)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(spec.create().run)
        await trio.sleep(1.0)  # the second crash is now waiting out a 20 s backoff
        supervisor.request_stop(final=True)
    assert trio.current_time() == 1.0
    assert len(journal.entries) == 2


async def test_a_child_failing_before_ready_fails_the_supervisor_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Start failure: already-started children are stopped and ChildStartFailed is raised."""
    journal = Journal()
    workers = Workers(journal)

    class Broken:
        async def run(
            self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
        ) -> None:
            raise OSError("cannot bind")

        def request_stop(self, *, final: bool) -> None:
            pass

    spec = SupervisorSpec("root", [workers.spec("a"), TaskSpec("broken", Broken)])
    with pytest.RaisesGroup(pytest.RaisesExc(ChildStartFailed, match="'broken'")):
        async with trio.open_nursery() as nursery:
            await nursery.start(spec.create().run)
    assert journal.events() == ["a up", "a asked to stop", "a down"]


async def test_handle_is_what_a_running_child_reported_when_it_started() -> None:
    """supervisor.handle(name): the started value of a running child (the HTTP server's
    URLs, say); an unknown name is ActorUnavailable."""
    spec = SupervisorSpec("s", [TaskSpec("reports", lambda: _Reports("ready at 42"))])
    async with open_supervisor(spec) as supervisor:
        assert supervisor.handle("reports") == "ready at 42"
        with pytest.raises(ActorUnavailable):
            supervisor.handle("nobody")


class _Reports:
    def __init__(self, value: str) -> None:
        self._value = value
        self._stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self._value)
        await self._stop.wait()

    def request_stop(self, *, final: bool) -> None:
        self._stop.set()
