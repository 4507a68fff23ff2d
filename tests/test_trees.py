"""Supervision trees: nesting, escalation up the tree, dynamic children, the registry."""

from __future__ import annotations

import math

import pytest
import trio

from config import RestartSettings
from supervisors import (
    ActorCrashed,
    ActorRef,
    ActorUnavailable,
    Registry,
    RestartIntensityExceeded,
    SupervisionError,
    Supervisor,
    SupervisorSpec,
    open_supervisor,
)
from tests._behaviours import Echo, Journal, Workers, recorder_spec

NO_RESTARTS = RestartSettings(max_restarts=0, within_s=60.0, backoff_min_s=0.0)
SOME_RESTARTS = RestartSettings(max_restarts=3, within_s=60.0, backoff_min_s=0.0)


async def test_an_escalating_subtree_is_restarted_by_its_parent_and_addresses_survive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """inner gives up at its first crash; root restarts inner; the actor's ref still works."""
    journal = Journal()
    registry = Registry()
    echo = recorder_spec("echo", journal)
    inner = SupervisorSpec("inner", [echo], restarts=NO_RESTARTS, registry=registry)
    root = SupervisorSpec("root", [inner], restarts=SOME_RESTARTS, registry=registry)
    async with open_supervisor(root) as supervisor:
        ref = registry.lookup("echo")
        with pytest.raises(ActorCrashed):
            await ref.ask(Echo("boom", crash=True))
        assert await ref.ask(Echo("after")) == "after"
        assert registry.lookup("echo") is ref
        assert supervisor.statistics().restarts == 1
    assert journal.events() == [
        "echo started #1",
        "#1 got boom",
        "echo started #2",
        "#2 got after",
    ]


async def test_escalation_climbs_until_a_supervisor_can_absorb_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """When every level gives up, the root itself fails with RestartIntensityExceeded."""
    journal = Journal()
    echo = recorder_spec("echo", journal)
    inner = SupervisorSpec("inner", [echo], restarts=NO_RESTARTS)
    root = SupervisorSpec("root", [inner], restarts=NO_RESTARTS)
    with pytest.RaisesGroup(
        pytest.RaisesExc(RestartIntensityExceeded, check=lambda e: e.supervisor == "root")
    ):
        async with open_supervisor(root):
            with pytest.raises(ActorCrashed):
                await echo.ref.ask(Echo("boom", crash=True))
            await trio.sleep_forever()


async def test_dynamic_children_can_be_added_found_and_removed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """start_child returns a working address; terminate_child stops it for good."""
    journal = Journal()
    registry = Registry()
    root = SupervisorSpec("root", [], registry=registry)
    async with open_supervisor(root) as supervisor:
        ref: ActorRef[Echo, object] = await supervisor.start_child(recorder_spec("dyn", journal))
        assert registry.lookup("dyn") is ref
        assert await ref.ask(Echo(1)) == 1
        assert supervisor.statistics().children == ("dyn",)
        with pytest.raises(SupervisionError, match="already has a child"):
            await supervisor.start_child(recorder_spec("dyn", journal))
        await supervisor.terminate_child("dyn")
        assert supervisor.statistics().children == ()
        with pytest.raises(ActorUnavailable, match="stopped"):
            await ref.ask(Echo(2))
        with pytest.raises(ActorUnavailable, match="no such actor"):
            registry.lookup("dyn")
        with pytest.raises(SupervisionError, match="has no child"):
            await supervisor.terminate_child("dyn")


async def test_dynamic_children_are_supervised_like_static_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dynamically added actor that crashes is restarted, then stopped with the tree."""
    journal = Journal()
    root = SupervisorSpec("root", [])
    async with open_supervisor(root) as supervisor:
        ref: ActorRef[Echo, object] = await supervisor.start_child(recorder_spec("dyn", journal))
        with pytest.raises(ActorCrashed):
            await ref.ask(Echo("boom", crash=True))
        assert await ref.ask(Echo("back")) == "back"
        assert supervisor.statistics().restarts == 1
    with pytest.raises(ActorUnavailable):
        await ref.ask(Echo("gone"))


async def test_two_actors_cannot_share_a_name_in_one_registry() -> None:
    """The registry refuses a second, different actor under a taken name."""
    journal = Journal()
    registry = Registry()
    registry.register(recorder_spec("echo", journal).ref)
    with pytest.raises(SupervisionError, match="already registered"):
        registry.register(recorder_spec("echo", journal).ref)


async def test_a_nested_supervisor_has_no_budget_of_its_own_and_its_leaves_bound_its_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subtree's shutdown_s is infinite (OTP); its stop still ends within its leaves' budgets."""
    journal = Journal()
    workers = Workers(journal)
    inner = SupervisorSpec(
        "inner",
        [
            workers.spec("a", ignore_stop=True, shutdown_s=2.0),
            workers.spec("b", ignore_stop=True, shutdown_s=3.0),
        ],
    )
    assert inner.shutdown_s == math.inf
    assert isinstance(inner.create(), Supervisor)
    async with open_supervisor(SupervisorSpec("root", [inner])):
        pass
    assert trio.current_time() == 5.0
    assert journal.entries[2:] == [
        (0.0, "b asked to stop"),
        (3.0, "b cancelled"),
        (3.0, "a asked to stop"),
        (5.0, "a cancelled"),
    ]
