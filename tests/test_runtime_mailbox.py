"""Actors at the edges: closed intakes, checkpoints, hand-overs, redelivery, groups, teardown."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from structlog.testing import capture_logs
from trio.testing import wait_all_tasks_blocked

from config import BreakerSettings, MailboxSettings, Overflow, RestartSettings, RuntimeSettings
from supervisors import (
    ActorCrashed,
    ActorSpec,
    ActorUnavailable,
    BreakerState,
    DomainError,
    RestartIntensityExceeded,
    SupervisorSpec,
    open_supervisor,
)
from supervisors._mailbox import Envelope
from tests._behaviours import Echo, Journal, outcome_of, recorder_spec


def solo(spec: ActorSpec[Any, Any], **options: Any) -> SupervisorSpec:
    return SupervisorSpec("root", [spec], **options)


class Instant:
    """Handles a message without ever yielding; remembers what it handled."""

    def __init__(self, handled: list[Any]) -> None:
        self.handled = handled

    async def handle(self, message: Any) -> Any:
        self.handled.append(message)
        return message


async def test_a_sender_waiting_for_room_hears_actor_unavailable_when_the_actor_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Overflow WAIT: a sender blocked on a full mailbox gets ActorUnavailable at a final stop."""
    journal = Journal()
    mailbox = MailboxSettings(
        capacity=1, overflow=Overflow.WAIT, overflow_wait_s=100.0, message_timeout_s=None
    )
    spec = recorder_spec("echo", journal, mailbox=mailbox, shutdown_s=0.0)
    heard: list[tuple[Any, float]] = []

    async def send() -> None:
        heard.append((await outcome_of(spec.ref.tell(Echo("waiting"))), trio.current_time()))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery, open_supervisor(solo(spec)):
            await spec.ref.tell(Echo("busy", delay_s=50.0))
            await wait_all_tasks_blocked()
            await spec.ref.tell(Echo("queued"))
            nursery.start_soon(send)
            await wait_all_tasks_blocked()
            await trio.sleep(1.0)
    [(error, at)] = heard
    assert isinstance(error, ActorUnavailable)
    assert error.reason == "stopped"
    assert at == 1.0


async def test_tell_in_a_cancelled_scope_raises_cancelled_and_queues_nothing() -> None:
    """tell checkpoints first: inside a cancelled scope it raises Cancelled, queueing nothing."""
    handled: list[Any] = []
    spec: ActorSpec[Any, Any] = ActorSpec("instant", lambda: Instant(handled))
    with trio.CancelScope() as scope:
        scope.cancel()
        await spec.ref.tell("never queued")
    assert scope.cancelled_caught
    stats = spec.ref.statistics()
    assert (stats.queued, stats.received) == (0, 0)


async def test_a_producer_loop_of_tells_lets_the_actor_keep_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """tell yields after queueing: 100 tells to an instant actor never fill a 2-slot mailbox."""
    handled: list[Any] = []
    spec: ActorSpec[Any, Any] = ActorSpec(
        "instant", lambda: Instant(handled), mailbox=MailboxSettings(capacity=2)
    )
    async with open_supervisor(solo(spec)):
        for n in range(100):
            await spec.ref.tell(n)
        await wait_all_tasks_blocked()
        assert spec.ref.statistics().rejected == 0
    assert handled == list(range(100))
    assert trio.current_time() == 0.0


async def test_a_restart_stop_during_a_hand_over_leaves_no_stale_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A restart-stop just after a hand-over to the idle reader: handled, no stale slot left."""
    handled: list[Any] = []
    spec: ActorSpec[Any, Any] = ActorSpec(
        "instant", lambda: Instant(handled), mailbox=MailboxSettings(capacity=1)
    )
    incarnation = spec.create()
    async with trio.open_nursery() as nursery:
        await nursery.start(incarnation.run)
        await wait_all_tasks_blocked()
        # Straight to the waiting reader, without a yield before the stop request.
        await spec.mailbox.put(Envelope("handed over", None))
        incarnation.request_stop(final=False)
    assert handled == ["handed over"]
    assert spec.ref.statistics().queued == 0
    await spec.ref.tell("next")  # the one slot is free
    assert spec.ref.statistics().queued == 1


async def test_a_message_taken_as_a_sibling_handler_crashes_is_handled_once_after_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """concurrency>1: a tell taken but not started when a sibling crashed is redelivered, once."""
    crash = trio.Event()
    handled: list[Any] = []

    class Handler:
        async def handle(self, message: Any) -> None:
            if message == "boom":
                await crash.wait()
                raise KeyError(message)
            await trio.lowlevel.checkpoint()
            handled.append(message)

    spec: ActorSpec[Any, Any] = ActorSpec("pool", Handler, mailbox=MailboxSettings(concurrency=2))
    async with open_supervisor(solo(spec)):
        await spec.ref.tell("boom")
        await wait_all_tasks_blocked()  # boom runs; the dispatcher waits on the mailbox
        crash.set()
        # Handed to the waiting dispatcher in the same scheduling round as the crash.
        await spec.ref.tell(0)
        for n in range(1, 20):
            await spec.ref.tell(n)
        await wait_all_tasks_blocked()
        stats = spec.ref.statistics()
    assert sorted(handled) == list(range(20))
    assert (stats.restarts, stats.crashed, stats.processed) == (1, 1, 20)


async def test_a_lomash_error_from_a_handlers_nursery_is_an_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group holding one LomashError answers with it: no crash, and no breaker failure."""
    refusal = DomainError("slot taken")

    class FanOut:
        async def handle(self, message: Any) -> str:
            async def part() -> None:
                raise refusal

            async with trio.open_nursery() as nursery:
                nursery.start_soon(part)
                nursery.start_soon(trio.sleep_forever)
            return "unreachable"

    breaker = BreakerSettings(min_calls=1, failure_ratio=0.0)
    spec: ActorSpec[Any, Any] = ActorSpec("fan", FanOut, breaker=breaker)
    async with open_supervisor(solo(spec)):
        with pytest.raises(DomainError) as caught:
            await spec.ref.ask("book")
        await wait_all_tasks_blocked()
        stats = spec.ref.statistics()
    assert caught.value is refusal
    assert (stats.failed, stats.crashed, stats.restarts) == (1, 0, 0)
    assert stats.breaker is not None
    assert stats.breaker.state is BreakerState.CLOSED


async def test_a_concurrent_actors_crash_is_named_by_the_handlers_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """concurrency>1: logs, the asker and the escalation's cause name KeyError, not a group."""
    journal = Journal()
    spec = recorder_spec("pool", journal, mailbox=MailboxSettings(concurrency=2))
    tree = solo(spec, restarts=RestartSettings(max_restarts=0, backoff_min_s=0.0))
    with capture_logs() as logs, pytest.RaisesGroup(RestartIntensityExceeded) as escalated:
        async with open_supervisor(tree):
            with pytest.raises(ActorCrashed) as crashed:
                await spec.ref.ask(Echo("boom", crash=True))
            await trio.sleep_forever()
    assert crashed.value.error_type == "KeyError"
    [entry] = [e for e in logs if e["event"] == "child_crashed"]
    assert entry["error_type"] == "KeyError"
    [error] = escalated.value.exceptions
    assert isinstance(error.__cause__, KeyError)


async def test_a_brutal_stop_still_tears_the_behaviour_down_within_cleanup_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """__aexit__ runs shielded after the actor is cancelled, and is cut off after cleanup_s."""
    log: list[tuple[float, str]] = []

    class Connection:
        def __init__(self, name: str, close_s: float) -> None:
            self.name = name
            self.close_s = close_s

        async def __aenter__(self) -> Connection:
            return self

        async def __aexit__(self, *exc: object) -> None:
            log.append((trio.current_time(), f"{self.name} closing"))
            await trio.sleep(self.close_s)
            log.append((trio.current_time(), f"{self.name} closed"))

        async def handle(self, message: Any) -> None:
            await trio.sleep_forever()

    def spec(name: str, close_s: float) -> ActorSpec[Any, Any]:
        return ActorSpec(
            name,
            lambda: Connection(name, close_s),
            mailbox=MailboxSettings(message_timeout_s=None),
            shutdown_s=1.0,
            cleanup_s=2.0,
        )

    quick, stuck = spec("quick", 0.5), spec("stuck", 10.0)
    with capture_logs() as logs:
        async with open_supervisor(SupervisorSpec("root", [quick, stuck])):
            await quick.ref.tell("work")
            await stuck.ref.tell("work")
    # Reverse order: stuck is killed at 1 s and given 2 s to close; quick at 4 s.
    assert log == [(1.0, "stuck closing"), (4.0, "quick closing"), (4.5, "quick closed")]
    assert trio.current_time() == 4.5
    [timed_out] = [e for e in logs if e["event"] == "actor_cleanup_timed_out"]
    assert (timed_out["actor"], timed_out["cleanup_s"]) == ("stuck", 2.0)


async def test_the_cleanup_budget_is_a_validated_runtime_setting() -> None:
    """cleanup_s defaults to 2 s and must not be negative."""
    assert RuntimeSettings().cleanup_s == 2.0
    with pytest.raises(ValueError, match="cleanup_s"):
        RuntimeSettings(cleanup_s=-1.0)
