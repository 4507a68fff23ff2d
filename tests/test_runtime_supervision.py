"""Supervisors at the edges: stopped control channels, group restarts, backoff timers,
the body of open_supervisor, and children gone for good."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from config import MailboxSettings, RestartSettings
from supervisors import (
    ActorCrashed,
    ActorRef,
    ActorUnavailable,
    Registry,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    SupervisionError,
    Supervisor,
    SupervisorSpec,
    open_supervisor,
)
from tests._behaviours import Echo, Journal, Workers, outcome_of, recorder_spec

IMMEDIATE = RestartSettings(max_restarts=10, within_s=60.0, backoff_min_s=0.0)
NO_RESTARTS = RestartSettings(max_restarts=0, within_s=60.0, backoff_min_s=0.0)
SLOW = MailboxSettings(message_timeout_s=None)


async def test_commands_to_a_stopped_supervisor_fail_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After run has ended, start_child and terminate_child raise ActorUnavailable at once."""
    journal = Journal()
    workers = Workers(journal)
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(SupervisorSpec("root", []).create().run)
        supervisor.request_stop(final=True)
    with trio.fail_after(1):
        with pytest.raises(ActorUnavailable, match="supervisor stopped"):
            await supervisor.start_child(workers.spec("late"))
        with pytest.raises(ActorUnavailable, match="supervisor stopped"):
            await supervisor.terminate_child("late")
    supervisor.request_stop(final=True)  # harmless once stopped


async def test_a_command_queued_behind_an_escalation_is_answered_when_run_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """start_child sent while the supervisor gives up gets ActorUnavailable as run ends."""
    journal = Journal()
    workers = Workers(journal)
    spec = SupervisorSpec(
        "root",
        [workers.spec("slow", ignore_stop=True, shutdown_s=5.0), workers.spec("b")],
        restarts=NO_RESTARTS,
    )
    answers: list[tuple[Any, float]] = []

    async def add(supervisor: Supervisor) -> None:
        answer = await outcome_of(supervisor.start_child(workers.spec("late")))
        answers.append((answer, trio.current_time()))

    with trio.fail_after(60):
        async with trio.open_nursery() as outer:
            with pytest.RaisesGroup(RestartIntensityExceeded):
                async with trio.open_nursery() as nursery:
                    supervisor: Supervisor = await nursery.start(spec.create().run)
                    workers.latest["b"].crash()
                    await wait_all_tasks_blocked()  # escalating: slow has 5 s to stop
                    outer.start_soon(add, supervisor)
    [(answer, at)] = answers
    assert isinstance(answer, ActorUnavailable)
    assert at == 5.0
    assert "late up" not in journal.events()


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
async def test_a_temporary_sibling_stopped_with_the_group_is_forgotten(
    autojump_clock: trio.testing.MockClock, strategy: Strategy
) -> None:
    """Group restart: a temporary sibling stops for good, leaves the registry; the rest restart."""
    journal = Journal()
    workers = Workers(journal)
    registry = Registry()
    temporary = recorder_spec("t", journal, restart=Restart.TEMPORARY)
    spec = SupervisorSpec(
        "root",
        [workers.spec("a"), temporary, workers.spec("c")],
        strategy=strategy,
        restarts=IMMEDIATE,
        registry=registry,
    )
    async with open_supervisor(spec) as supervisor:
        journal.entries.clear()
        workers.latest["a"].crash()
        await wait_all_tasks_blocked()
        stats = supervisor.statistics()
        assert journal.events() == ["c asked to stop", "c down", "a up", "c up"]
        assert (stats.children, stats.running) == (("a", "c"), ("a", "c"))
        assert registry.names() == ()
        with pytest.raises(ActorUnavailable, match="stopped"):
            await temporary.ref.tell(Echo("anyone?"))


async def test_a_backoff_does_not_hold_up_the_other_children(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """one_for_one: while a waits out a 20 s backoff, b crashing at 1 s is back at 1 s."""
    journal = Journal()
    workers = Workers(journal)
    restarts = RestartSettings(
        max_restarts=100, within_s=1000.0, backoff_min_s=20.0, backoff_jitter=0.0
    )
    spec = SupervisorSpec("root", [workers.spec("a"), workers.spec("b")], restarts=restarts)
    async with open_supervisor(spec) as supervisor:
        workers.latest["a"].crash()
        await wait_all_tasks_blocked()  # first restart: immediate
        workers.latest["a"].crash()
        await wait_all_tasks_blocked()  # second: 20 s from now
        assert supervisor.statistics().running == ("b",)
        await trio.sleep(1.0)
        journal.entries.clear()
        workers.latest["b"].crash()
        await wait_all_tasks_blocked()
        assert supervisor.statistics().running == ("b",)
        assert await supervisor.start_child(workers.spec("d")) is workers.latest["d"]
        assert supervisor.statistics().running == ("b", "d")
        await trio.sleep(19.0)
        await wait_all_tasks_blocked()
        assert supervisor.statistics().running == ("a", "b", "d")
    assert [(t, e) for t, e in journal.entries if e.endswith(" up")] == [
        (1.0, "b up"),
        (1.0, "d up"),
        (20.0, "a up"),
    ]


async def test_a_failing_body_stops_the_tree_gracefully_and_raises_its_own_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Body raises: queued work drains (graceful, final), then the very error propagates."""
    journal = Journal()
    spec = recorder_spec("echo", journal)
    failure = ValueError("body failed")

    async def body() -> None:
        async with open_supervisor(SupervisorSpec("root", [spec])):
            for n in range(3):
                await spec.ref.tell(Echo(n, delay_s=1.0))
            raise failure

    with pytest.raises(ValueError, match="body failed") as caught:
        await body()
    assert caught.value is failure
    assert trio.current_time() == 3.0
    assert journal.events()[-3:] == ["#1 got 0", "#1 got 1", "#1 got 2"]


async def test_a_cancelled_body_cancels_the_tree_and_answers_what_was_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Body cancelled: the tree is cancelled at once (brutal); queued asks hear ActorUnavailable."""
    journal = Journal()
    spec = recorder_spec("echo", journal, mailbox=SLOW)
    answers: list[Any] = []

    async def ask() -> None:
        answers.append(await outcome_of(spec.ref.ask(Echo("queued"))))

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(1.0):
            async with open_supervisor(SupervisorSpec("root", [spec])):
                await spec.ref.tell(Echo("busy", delay_s=10.0))
                await wait_all_tasks_blocked()
                nursery.start_soon(ask)
                await trio.sleep_forever()
    assert trio.current_time() == 1.0
    assert [type(answer) for answer in answers] == [ActorUnavailable]
    with pytest.raises(ActorUnavailable, match="stopped"):
        await spec.ref.tell(Echo("late"))


async def test_a_subtree_stopped_for_a_restart_is_closed_by_the_final_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subtree down for a group restart when the tree stops: its actors refuse and answer."""
    journal = Journal()
    workers = Workers(journal)
    x = recorder_spec("x", journal, mailbox=SLOW)
    root = SupervisorSpec(
        "root",
        [SupervisorSpec("inner", [x]), workers.spec("w")],
        strategy=Strategy.ONE_FOR_ALL,
        restarts=IMMEDIATE,
    )
    answers: list[tuple[Any, float]] = []

    async def ask() -> None:
        answers.append((await outcome_of(x.ref.ask(Echo("queued"))), trio.current_time()))

    async with trio.open_nursery() as nursery, open_supervisor(root):
        await x.ref.tell(Echo("busy", delay_s=3.0))
        await wait_all_tasks_blocked()
        nursery.start_soon(ask)
        await wait_all_tasks_blocked()
        workers.latest["w"].crash()  # inner stops for a restart: 3 s to finish "busy"
        await trio.sleep(1.0)
    [(answer, at)] = answers
    assert isinstance(answer, ActorUnavailable)
    assert at == 3.0
    with pytest.raises(ActorUnavailable, match="stopped"):
        await x.ref.tell(Echo("after the stop"))


async def test_terminating_a_subtree_closes_its_actors_and_unregisters_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """terminate_child(subtree): its actors leave the registry and refuse messages."""
    journal = Journal()
    registry = Registry()
    x = recorder_spec("x", journal)
    inner = SupervisorSpec("inner", [x], registry=registry)
    async with open_supervisor(SupervisorSpec("root", [inner], registry=registry)) as root:
        await root.terminate_child("inner")
        assert registry.names() == ()
        with pytest.raises(ActorUnavailable, match="stopped"):
            await x.ref.tell(Echo("anyone?"))


async def test_a_temporary_subtree_that_gives_up_is_closed_for_good(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A temporary subtree that escalates is forgotten: its actors leave the registry, refuse."""
    journal = Journal()
    registry = Registry()
    y = recorder_spec("y", journal)
    inner = SupervisorSpec(
        "inner", [y], registry=registry, restart=Restart.TEMPORARY, restarts=NO_RESTARTS
    )
    async with open_supervisor(SupervisorSpec("root", [inner], registry=registry)) as root:
        with pytest.raises(ActorCrashed):
            await y.ref.ask(Echo("boom", crash=True))
        await wait_all_tasks_blocked()
        assert root.statistics().children == ()
        assert registry.names() == ()
        with pytest.raises(ActorUnavailable, match="stopped"):
            await y.ref.tell(Echo("into the void"))


async def test_dynamic_children_of_a_restarted_subtree_are_closed_for_good(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subtree restarts with its static children only; dynamic ones are closed, unregistered."""
    journal = Journal()
    registry = Registry()
    static = recorder_spec("s", journal)
    dynamic = recorder_spec("d", journal)
    inner = SupervisorSpec("inner", [static], registry=registry, restarts=NO_RESTARTS)
    async with open_supervisor(SupervisorSpec("root", [], registry=registry)) as root:
        subtree: Supervisor = await root.start_child(inner)
        await subtree.start_child(dynamic)
        assert registry.names() == ("d", "s")
        with pytest.raises(ActorCrashed):
            await static.ref.ask(Echo("boom", crash=True))
        await wait_all_tasks_blocked()
        assert root.statistics().restarts == 1
        assert registry.names() == ("s",)
        with pytest.raises(ActorUnavailable, match="stopped"):
            await dynamic.ref.tell(Echo("lost?"))
        assert await static.ref.ask(Echo("back")) == "back"


async def test_a_dynamic_child_of_a_subtree_drains_within_its_own_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subtree's dynamic actor is stopped gracefully: its queued work finishes by 3 s."""
    journal = Journal()
    dynamic = recorder_spec("d", journal)
    async with open_supervisor(SupervisorSpec("root", [])) as root:
        subtree: Supervisor = await root.start_child(SupervisorSpec("inner", []))
        ref: ActorRef[Echo, Any] = await subtree.start_child(dynamic)
        for n in range(3):
            await ref.tell(Echo(n, delay_s=1.0))
    assert trio.current_time() == 3.0
    assert journal.events()[-3:] == ["#1 got 0", "#1 got 1", "#1 got 2"]


async def test_an_actor_spec_stopped_for_good_is_refused_instead_of_crash_looping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Re-adding a terminated ActorSpec fails with SupervisionError; the tree carries on."""
    journal = Journal()
    spec = recorder_spec("x", journal)
    async with open_supervisor(SupervisorSpec("root", [], restarts=IMMEDIATE)) as root:
        await root.start_child(spec)
        await root.terminate_child("x")
        with pytest.raises(SupervisionError, match="stopped for good"):
            await root.start_child(spec)
        await trio.sleep(10.0)
        stats = root.statistics()
        assert (stats.children, stats.restarts, stats.escalations) == ((), 0, 0)
    with pytest.RaisesGroup(pytest.RaisesExc(SupervisionError, match="stopped for good")):
        async with open_supervisor(SupervisorSpec("again", [spec])):
            pass  # pragma: no cover - the tree refuses to start


async def test_a_tree_that_gives_up_leaves_no_actor_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After the root escalates, every actor in the tree refuses messages."""
    journal = Journal()
    echo = recorder_spec("echo", journal)
    other = recorder_spec("other", journal)
    inner = SupervisorSpec("inner", [echo, other], restarts=NO_RESTARTS)
    with pytest.RaisesGroup(RestartIntensityExceeded):
        async with open_supervisor(SupervisorSpec("root", [inner], restarts=NO_RESTARTS)):
            with pytest.raises(ActorCrashed):
                await echo.ref.ask(Echo("boom", crash=True))
            await trio.sleep_forever()
    for ref in (echo.ref, other.ref):
        with pytest.raises(ActorUnavailable, match="stopped"):
            await ref.tell(Echo("anyone?"))
