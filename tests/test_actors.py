"""Actors: addresses, tell/ask, overflow, deadlines, crashes, restarts, draining."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from config import MailboxSettings, Overflow, RestartSettings
from supervisors import (
    ActorCrashed,
    ActorSpec,
    ActorUnavailable,
    AskTimeout,
    MailboxFull,
    MessageTimeout,
    Registry,
    SupervisorSpec,
    UpstreamError,
    open_supervisor,
)
from tests._behaviours import Echo, Journal, outcome_of, recorder_spec


def solo(spec: ActorSpec[Any, Any], registry: Registry | None = None) -> SupervisorSpec:
    return SupervisorSpec("root", [spec], registry=registry)


async def test_ask_returns_the_reply_and_tells_are_handled_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Messages are handled one at a time, in the order they were sent."""
    journal = Journal()
    spec = recorder_spec("echo", journal)
    async with open_supervisor(solo(spec)):
        for n in range(3):
            await spec.ref.tell(Echo(n, delay_s=1.0))
        assert await spec.ref.ask(Echo("last")) == "last"
        assert trio.current_time() == 3.0
    assert journal.events() == [
        "echo started #1",
        "#1 got 0",
        "#1 got 1",
        "#1 got 2",
        "#1 got last",
    ]


async def test_the_message_in_flight_at_a_crash_gets_an_error_reply_and_the_rest_survive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Crash: the asker hears ActorCrashed; queued messages go to the restarted actor."""
    journal = Journal()
    spec = recorder_spec("echo", journal)
    results: dict[int, Any] = {}

    async def ask(key: int, message: Echo) -> None:
        results[key] = await outcome_of(spec.ref.ask(message))

    async with open_supervisor(solo(spec)), trio.open_nursery() as nursery:
        nursery.start_soon(ask, 1, Echo("boom", delay_s=1.0, crash=True))
        await wait_all_tasks_blocked()
        for key in (2, 3):
            nursery.start_soon(ask, key, Echo(key))
            await wait_all_tasks_blocked()
    assert isinstance(results[1], ActorCrashed)
    assert results[1].error_type == "KeyError"
    assert (results[2], results[3]) == (2, 3)
    assert journal.events() == [
        "echo started #1",
        "#1 got boom",
        "echo started #2",
        "#2 got 2",
        "#2 got 3",
    ]
    assert spec.ref.statistics().restarts == 1
    assert spec.ref.statistics().crashed == 1


async def test_messages_queued_while_the_actor_restarts_are_not_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Tells sent while the actor is down are all handled by its next incarnation."""
    journal = Journal()
    spec = recorder_spec("echo", journal)
    async with open_supervisor(solo(spec)):
        await spec.ref.tell(Echo("boom", delay_s=1.0, crash=True))
        for n in range(50):
            await spec.ref.tell(Echo(n))
        await trio.sleep(2.0)
        assert spec.ref.statistics().processed == 50
    handled = [e for e in journal.events() if e.startswith("#2 got")]
    assert handled == [f"#2 got {n}" for n in range(50)]


async def test_a_lomash_error_is_an_answer_not_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The asker gets the handler's own LomashError and the actor keeps running."""
    journal = Journal()
    spec = recorder_spec("echo", journal)
    error = UpstreamError("stripe said 402", dependency="stripe", status=402)
    async with open_supervisor(solo(spec)):
        with pytest.raises(UpstreamError) as caught:
            await spec.ref.ask(Echo("pay", error=error))
        assert caught.value is error
        assert await spec.ref.ask(Echo("next")) == "next"
        assert spec.ref.statistics().restarts == 0
        assert spec.ref.statistics().failed == 1


async def test_a_full_mailbox_rejects_at_once_with_mailbox_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Overflow REJECT: the first message past capacity fails immediately (503 later)."""
    journal = Journal()
    spec = recorder_spec("echo", journal, mailbox=MailboxSettings(capacity=2))
    async with open_supervisor(solo(spec)):
        await spec.ref.tell(Echo("busy", delay_s=10.0))
        await wait_all_tasks_blocked()  # the actor took it: the mailbox is empty again
        await spec.ref.tell(Echo(1))
        await spec.ref.tell(Echo(2))
        with pytest.raises(MailboxFull) as caught:
            await spec.ref.ask(Echo(3))
        assert trio.current_time() == 0.0
        assert caught.value.retry_after == 1.0
        assert caught.value.capacity == 2
        stats = spec.ref.statistics()
        assert (stats.queued, stats.rejected) == (2, 1)


async def test_overflow_wait_gives_up_after_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Overflow WAIT: a sender waits for room up to overflow_wait_s, then MailboxFull."""
    journal = Journal()
    mailbox = MailboxSettings(capacity=1, overflow=Overflow.WAIT, overflow_wait_s=0.5)
    spec = recorder_spec("echo", journal, mailbox=mailbox)
    async with open_supervisor(solo(spec)):
        await spec.ref.tell(Echo("busy", delay_s=10.0))
        await wait_all_tasks_blocked()
        await spec.ref.tell(Echo(1))
        with pytest.raises(MailboxFull):
            await spec.ref.tell(Echo(2))
        assert trio.current_time() == 0.5


async def test_overflow_wait_succeeds_when_room_frees_up_in_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Overflow WAIT: the send goes through the moment the actor takes a message."""
    journal = Journal()
    mailbox = MailboxSettings(capacity=1, overflow=Overflow.WAIT, overflow_wait_s=0.5)
    spec = recorder_spec("echo", journal, mailbox=mailbox)
    async with open_supervisor(solo(spec)):
        await spec.ref.tell(Echo("busy", delay_s=0.3))
        await wait_all_tasks_blocked()
        await spec.ref.tell(Echo(1))
        await spec.ref.tell(Echo(2))
        assert trio.current_time() == pytest.approx(0.3)


async def test_an_ask_never_waits_past_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ask_timeout_s bounds every ask; a caller's tighter deadline wins."""
    journal = Journal()
    mailbox = MailboxSettings(ask_timeout_s=2.0, message_timeout_s=None)
    spec = recorder_spec("echo", journal, mailbox=mailbox)
    async with open_supervisor(solo(spec)):
        with pytest.raises(AskTimeout) as caught:
            await spec.ref.ask(Echo("slow", delay_s=100.0))
        assert trio.current_time() == 2.0
        assert caught.value.timeout_s == 2.0
        with trio.move_on_after(1.0):
            await spec.ref.ask(Echo("slow", delay_s=100.0))
        assert trio.current_time() == 3.0


async def test_an_ask_abandoned_before_it_was_handled_is_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A message whose asker gave up while it was queued never reaches the handler."""
    journal = Journal()
    mailbox = MailboxSettings(ask_timeout_s=1.0, message_timeout_s=None)
    spec = recorder_spec("echo", journal, mailbox=mailbox)
    async with open_supervisor(solo(spec)):
        await spec.ref.tell(Echo("busy", delay_s=5.0))
        with pytest.raises(AskTimeout):
            await spec.ref.ask(Echo("stale"))
        await trio.sleep(5.0)
        assert spec.ref.statistics().expired == 1
    assert "#1 got stale" not in journal.events()


async def test_a_handler_past_its_message_timeout_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The per-message timeout cancels the handler and answers MessageTimeout."""
    journal = Journal()
    spec = recorder_spec("echo", journal, mailbox=MailboxSettings(message_timeout_s=5.0))
    async with open_supervisor(solo(spec)):
        with pytest.raises(MessageTimeout):
            await spec.ref.ask(Echo("slow", delay_s=6.0))
        assert trio.current_time() == 5.0
        assert spec.ref.statistics().timeouts == 1
        assert await spec.ref.ask(Echo("fine", delay_s=1.0)) == "fine"


async def test_the_bulkhead_bounds_how_many_messages_run_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """concurrency=2: four 1 s messages finish at 1, 1, 2, 2 s."""
    journal = Journal()
    spec = recorder_spec("echo", journal, mailbox=MailboxSettings(concurrency=2))
    finished: list[float] = []
    peak = 0

    async def ask(n: int) -> None:
        await spec.ref.ask(Echo(n, delay_s=1.0))
        finished.append(trio.current_time())

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, spec.ref.statistics().in_flight)
            await trio.sleep(0.1)

    async with open_supervisor(solo(spec)), trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        async with trio.open_nursery() as asks:
            for n in range(4):
                asks.start_soon(ask, n)
        nursery.cancel_scope.cancel()
    assert finished == [1.0, 1.0, 2.0, 2.0]
    assert peak == 2


async def test_a_final_stop_drains_accepted_messages_and_then_refuses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Stopping for good handles what was accepted; later sends get ActorUnavailable."""
    journal = Journal()
    spec = recorder_spec("echo", journal)
    async with open_supervisor(solo(spec)):
        for n in range(3):
            await spec.ref.tell(Echo(n, delay_s=1.0))
    assert trio.current_time() == 3.0
    assert journal.events()[-3:] == ["#1 got 0", "#1 got 1", "#1 got 2"]
    with pytest.raises(ActorUnavailable, match="stopped"):
        await spec.ref.ask(Echo("late"))


async def test_messages_left_when_the_drain_budget_runs_out_are_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Past shutdown_s the actor is cancelled; every waiting asker hears ActorUnavailable."""
    journal = Journal()
    spec = recorder_spec("echo", journal, shutdown_s=1.5)
    results: list[Any] = []

    async def ask(n: int) -> None:
        results.append(await outcome_of(spec.ref.ask(Echo(n, delay_s=1.0))))

    async with trio.open_nursery() as nursery, open_supervisor(solo(spec)):
        for n in range(4):
            nursery.start_soon(ask, n)
            await wait_all_tasks_blocked()
    assert trio.current_time() == 1.5
    assert results[0] == 0
    assert [type(r) for r in results[1:]] == [ActorUnavailable] * 3


async def test_a_behaviour_that_is_a_context_manager_is_entered_per_incarnation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Resources opened in __aenter__ are closed on crash and reopened on restart."""
    log: list[str] = []

    class Connection:
        async def __aenter__(self) -> Connection:
            log.append("open")
            return self

        async def __aexit__(self, *exc: object) -> None:
            log.append("close")

        async def handle(self, message: str) -> str:
            if message == "boom":
                raise ValueError(message)
            return message

    spec: ActorSpec[str, str] = ActorSpec("conn", Connection)
    async with open_supervisor(solo(spec)):
        with pytest.raises(ActorCrashed):
            await spec.ref.ask("boom")
        assert await spec.ref.ask("ok") == "ok"
    assert log == ["open", "close", "open", "close"]


async def test_the_registry_finds_an_actor_by_name_across_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """lookup(name) returns the same address before and after a restart."""
    journal = Journal()
    registry = Registry()
    spec = recorder_spec("echo", journal)
    async with open_supervisor(solo(spec, registry)):
        ref = registry.lookup("echo")
        with pytest.raises(ActorCrashed):
            await ref.ask(Echo("boom", crash=True))
        assert registry.lookup("echo") is ref
        assert await ref.ask(Echo("again")) == "again"
    with pytest.raises(ActorUnavailable, match="no such actor"):
        registry.lookup("nobody")


async def test_an_ask_stays_bounded_while_its_actor_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An ask queued behind two messages that crash the actor, at 0.5 s and 1.0 s: the
    timer that watched the ask stops with the first incarnation, the second restart
    is backed off to 6.0 s; the asker keeps its own deadline and hears AskTimeout at
    exactly 2 s, and the third incarnation skips the abandoned message."""
    journal = Journal()
    mailbox = MailboxSettings(ask_timeout_s=2.0, message_timeout_s=None)
    spec = recorder_spec("echo", journal, mailbox=mailbox)
    restarts = RestartSettings(backoff_min_s=5.0, backoff_jitter=0.0, backoff_reset_s=60.0)
    async with open_supervisor(SupervisorSpec("root", [spec], restarts=restarts)):
        await spec.ref.tell(Echo("boom", delay_s=0.5, crash=True))
        await spec.ref.tell(Echo("boom again", delay_s=0.5, crash=True))
        with pytest.raises(AskTimeout):
            await spec.ref.ask(Echo("queued"))
        assert trio.current_time() == 2.0
        await trio.sleep(10.0)
        assert spec.ref.statistics().restarts == 2
        assert spec.ref.statistics().expired == 1
    assert not any(event.endswith("got queued") for event in journal.events())
    assert journal.entries[journal.events().index("echo started #3")][0] == pytest.approx(6.0)
