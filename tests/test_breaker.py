"""Circuit breaker transitions with the spec's numbers, alone and as a mailbox policy."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from config import BreakerSettings, MailboxSettings
from supervisors import (
    ActorRef,
    ActorUnavailable,
    Breaker,
    BreakerState,
    ConnectionLost,
    DomainError,
    MessageTimeout,
    ServiceUnavailable,
    Strategy,
    SupervisorSpec,
    open_supervisor,
)
from tests._behaviours import Echo, Journal, Workers, outcome_of, recorder_spec

SPEC = BreakerSettings()  # 50 %, 5 calls, 60 s window, 30 s reset, 1 trial


def state(breaker: Breaker) -> BreakerState:
    """The breaker's state (a call, so the type checker does not pin it)."""
    return breaker.state


def outcomes(breaker: Breaker, *failed: bool) -> None:
    for failure in failed:
        permit = breaker.acquire()
        if failure:
            breaker.record_failure(permit)
        else:
            breaker.record_success(permit)


async def test_the_spec_numbers_are_the_defaults() -> None:
    """Defaults: 50 % of at least 5 calls in 60 s opens; half-open after 30 s; 1 trial."""
    assert (SPEC.failure_ratio, SPEC.min_calls, SPEC.window_s) == (0.5, 5, 60.0)
    assert (SPEC.reset_timeout_s, SPEC.half_open_max_calls) == (30.0, 1)
    assert MailboxSettings().message_timeout_s == 5.0


async def test_four_failures_do_not_open_it(autojump_clock: trio.testing.MockClock) -> None:
    """Below the 5-call volume threshold the breaker stays closed whatever fails."""
    breaker = Breaker("stripe", SPEC)
    outcomes(breaker, True, True, True, True)
    assert state(breaker) is BreakerState.CLOSED


async def test_five_calls_with_three_failures_open_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """5 calls, 3 failed (60 % > 50 %): open."""
    breaker = Breaker("stripe", SPEC)
    outcomes(breaker, False, False, True, True)
    assert state(breaker) is BreakerState.CLOSED
    outcomes(breaker, True)
    assert state(breaker) is BreakerState.OPEN


async def test_exactly_half_failing_does_not_open_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The threshold is *more than* 50 %: 3 of 6 failing keeps it closed."""
    breaker = Breaker("stripe", SPEC)
    outcomes(breaker, False, False, False, True, True, True)
    assert state(breaker) is BreakerState.CLOSED
    outcomes(breaker, True)  # 4 of 7
    assert state(breaker) is BreakerState.OPEN


async def test_failures_older_than_the_window_do_not_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The 60 s window rolls: old failures age out before new ones are counted."""
    breaker = Breaker("stripe", SPEC)
    outcomes(breaker, True, True, True, True)
    await trio.sleep(60.0)
    outcomes(breaker, True, False, False, False, False)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.statistics().window_calls == 5


async def test_open_rejects_instantly_and_half_opens_after_the_reset_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Open: ServiceUnavailable with the time left; 30 s later exactly one trial."""
    breaker = Breaker("stripe", SPEC)
    outcomes(breaker, True, True, True, True, True)
    await trio.sleep(10.0)
    with pytest.raises(ServiceUnavailable) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 20.0
    await trio.sleep(19.999)
    assert state(breaker) is BreakerState.OPEN
    await trio.sleep(0.001)
    assert state(breaker) is BreakerState.HALF_OPEN
    trial = breaker.acquire()
    assert trial.trial
    with pytest.raises(ServiceUnavailable):
        breaker.acquire()  # only one trial at a time
    breaker.record_success(trial)
    assert state(breaker) is BreakerState.CLOSED
    stats = breaker.statistics()
    assert (stats.opened, stats.half_opened, stats.closed, stats.rejected) == (1, 1, 1, 2)


async def test_a_failed_trial_reopens_for_another_full_reset_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Half-Open trial fails: open again, rejecting for 30 s more."""
    breaker = Breaker("stripe", SPEC)
    outcomes(breaker, True, True, True, True, True)
    await trio.sleep(30.0)
    breaker.record_failure(breaker.acquire())
    assert state(breaker) is BreakerState.OPEN
    with pytest.raises(ServiceUnavailable) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 30.0


async def test_a_cancelled_trial_gives_its_permit_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Half-Open trial released without a verdict: the next caller may try."""
    breaker = Breaker("stripe", SPEC)
    outcomes(breaker, True, True, True, True, True)
    await trio.sleep(30.0)
    breaker.release(breaker.acquire())
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.record_success(breaker.acquire())
    assert state(breaker) is BreakerState.CLOSED


async def test_late_outcomes_from_before_a_transition_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A slow call admitted while closed cannot close a breaker that opened meanwhile."""
    breaker = Breaker("stripe", SPEC)
    slow = breaker.acquire()
    outcomes(breaker, True, True, True, True, True)
    breaker.record_success(slow)
    assert state(breaker) is BreakerState.OPEN


async def test_a_stale_trial_failing_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A trial permit from an older generation neither re-opens nor moves the breaker."""
    breaker = Breaker("stripe", BreakerSettings(half_open_max_calls=2))
    outcomes(breaker, True, True, True, True, True)
    await trio.sleep(30.0)
    stale, failing = breaker.acquire(), breaker.acquire()
    breaker.record_failure(failing)  # re-opens at t=30: a new generation
    await trio.sleep(10.0)
    breaker.record_failure(stale)
    with pytest.raises(ServiceUnavailable) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 20.0  # still the opening of t=30
    await trio.sleep(20.0)
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.record_failure(stale)
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.record_success(breaker.acquire())
    breaker.record_success(breaker.acquire())  # both trial permits were free
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.statistics().opened == 2


def breaker_state(ref: ActorRef[Any, Any]) -> BreakerState:
    stats = ref.statistics().breaker
    assert stats is not None
    return stats.state


def breaker_actor(journal: Journal) -> SupervisorSpec:
    spec = recorder_spec("stripe", journal, breaker=SPEC)
    return SupervisorSpec("root", [spec])


async def test_an_open_breaker_rejects_asks_at_the_door_without_queueing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Fallback: once open, asks fail at once; nothing reaches the handler."""
    journal = Journal()
    async with open_supervisor(breaker_actor(journal)) as supervisor:
        ref = supervisor.spec.children[0].ref  # type: ignore[attr-defined]
        for _ in range(5):
            with pytest.raises(ConnectionLost):
                await ref.ask(Echo("x", error=ConnectionLost("reset", dependency="stripe")))
        seen = len(journal.entries)
        with pytest.raises(ServiceUnavailable) as caught:
            await ref.ask(Echo("y"))
        assert trio.current_time() == 0.0
        assert caught.value.retry_after == 30.0
        assert len(journal.entries) == seen
        stats = ref.statistics()
        assert stats.breaker is not None
        assert stats.breaker.state is BreakerState.OPEN
        assert stats.rejected == 1


async def test_timeouts_count_as_failures_and_domain_errors_do_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The 5 s call timeout trips the breaker; business rejections never do."""
    journal = Journal()
    async with open_supervisor(breaker_actor(journal)) as supervisor:
        ref = supervisor.spec.children[0].ref  # type: ignore[attr-defined]
        for _ in range(10):
            with pytest.raises(DomainError):
                await ref.ask(Echo("taken", error=DomainError("slot taken")))
        assert breaker_state(ref) is BreakerState.CLOSED
        for _ in range(5):
            with pytest.raises(MessageTimeout):
                await ref.ask(Echo("slow", delay_s=60.0))
        # 10 successes + 5 failures in the window: 33 %, still closed...
        assert breaker_state(ref) is BreakerState.CLOSED
        await trio.sleep(60.0)  # ...but once the successes age out:
        for _ in range(5):
            with pytest.raises(MessageTimeout):
                await ref.ask(Echo("slow", delay_s=60.0))
        assert breaker_state(ref) is BreakerState.OPEN


async def test_a_trial_cancelled_mid_call_frees_the_permit_for_the_next_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A trial handler cancelled by a restart gives its permit back; the next ask is the trial."""
    journal = Journal()
    workers = Workers(journal)
    spec = recorder_spec("stripe", journal, breaker=SPEC, shutdown_s=1.0)
    tree = SupervisorSpec("root", [spec, workers.spec("sibling")], strategy=Strategy.ONE_FOR_ALL)
    trial: list[Any] = []

    async def ask_trial() -> None:
        trial.append(await outcome_of(spec.ref.ask(Echo("trial", delay_s=4.0))))

    async with open_supervisor(tree):
        for _ in range(5):
            with pytest.raises(ConnectionLost):
                await spec.ref.ask(Echo("x", error=ConnectionLost("reset", dependency="stripe")))
        await trio.sleep(30.0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_trial)
            await wait_all_tasks_blocked()
            with pytest.raises(ServiceUnavailable):
                await spec.ref.ask(Echo("second"))  # the one trial permit is taken
            workers.latest["sibling"].crash()  # one_for_all: the trial is cancelled at +1 s
        assert trio.current_time() == 31.0
        [cancelled] = trial
        assert isinstance(cancelled, ActorUnavailable)
        assert cancelled.reason == "stopped while processing"
        assert breaker_state(spec.ref) is BreakerState.HALF_OPEN
        assert await spec.ref.ask(Echo("next trial")) == "next trial"
        assert breaker_state(spec.ref) is BreakerState.CLOSED
