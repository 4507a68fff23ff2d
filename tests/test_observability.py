"""Every restart, escalation, transition, rejection and retry is logged and counted."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from config import BreakerSettings, MailboxSettings, RestartSettings, RetrySettings
from supervisors import (
    ActorCrashed,
    ConnectionLost,
    MailboxFull,
    RestartIntensityExceeded,
    ServiceUnavailable,
    SupervisorSpec,
    UpstreamError,
    open_supervisor,
)
from tests._behaviours import Echo, IdempotentEcho, Journal, no_jitter, recorder_spec


def events_named(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_restart_is_logged_with_the_actor_and_supervisor_names(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """child_crashed and child_restarted carry who crashed, why, and the delay."""
    journal = Journal()
    spec = recorder_spec("booker", journal)
    with capture_logs() as logs:
        async with open_supervisor(SupervisorSpec("root", [spec])):
            with pytest.raises(ActorCrashed):
                await spec.ref.ask(Echo("boom", crash=True))
            await spec.ref.ask(Echo("ok"))
    [crashed] = events_named(logs, "child_crashed")
    assert (crashed["supervisor"], crashed["child"], crashed["error_type"]) == (
        "root",
        "booker",
        "KeyError",
    )
    [restarted] = events_named(logs, "child_restarted")
    assert (restarted["child"], restarted["delay_s"], restarted["log_level"]) == (
        "booker",
        0.0,
        "warning",
    )


async def test_an_escalation_is_logged_and_counted(autojump_clock: trio.testing.MockClock) -> None:
    """supervisor_escalated names the supervisor, the child and the limits."""
    journal = Journal()
    spec = recorder_spec("booker", journal)
    tree = SupervisorSpec(
        "root", [spec], restarts=RestartSettings(max_restarts=0, within_s=5.0, backoff_min_s=0.0)
    )
    with capture_logs() as logs, pytest.RaisesGroup(RestartIntensityExceeded):
        async with open_supervisor(tree):
            with pytest.raises(ActorCrashed):
                await spec.ref.ask(Echo("boom", crash=True))
            await trio.sleep_forever()
    [escalated] = events_named(logs, "supervisor_escalated")
    assert escalated["supervisor"] == "root"
    assert escalated["child"] == "booker"
    assert (escalated["max_restarts"], escalated["within_s"]) == (0, 5.0)


async def test_breaker_transitions_rejections_and_retries_are_logged_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """breaker_opened/half_opened/closed, message_retried, mailbox_rejected with the actor."""
    journal = Journal()
    spec = recorder_spec(
        "stripe",
        journal,
        breaker=BreakerSettings(),
        retry=RetrySettings(),
        jitter=no_jitter,
        mailbox=MailboxSettings(capacity=1),
    )
    reset = ConnectionLost("reset", dependency="stripe")
    with capture_logs() as logs:
        async with open_supervisor(SupervisorSpec("root", [spec])):
            with pytest.raises(ConnectionLost):
                await spec.ref.ask(IdempotentEcho("get", error=reset))  # 4 attempts, 3 retries
            with pytest.raises(ConnectionLost):
                await spec.ref.ask(Echo("pay", error=reset))  # 5th failure: opens
            with pytest.raises(ServiceUnavailable):
                await spec.ref.ask(Echo("pay"))
            await trio.sleep(30.0)
            assert await spec.ref.ask(Echo("trial")) == "trial"
            await spec.ref.tell(Echo("busy", delay_s=1.0))
            await trio.testing.wait_all_tasks_blocked()
            await spec.ref.tell(Echo("queued"))
            with pytest.raises(MailboxFull):
                await spec.ref.tell(Echo("one too many"))
            stats = spec.ref.statistics()
    assert [e["event"] for e in logs if str(e["event"]).startswith("breaker_")] == [
        "breaker_opened",
        "breaker_half_opened",
        "breaker_closed",
    ]
    runtime = [e for e in logs if str(e["event"]).startswith(("breaker_", "message_", "mailbox_"))]
    assert runtime
    assert all(e.get("actor") == "stripe" for e in runtime)
    assert [e["retry"] for e in events_named(logs, "message_retried")] == [1, 2, 3]
    assert len(events_named(logs, "mailbox_rejected")) == 1
    assert stats.retries == 3
    assert stats.rejected == 2  # one open-circuit rejection, one full mailbox
    assert stats.breaker is not None
    assert (stats.breaker.opened, stats.breaker.half_opened, stats.breaker.closed) == (1, 1, 1)
    assert stats.breaker.rejected == 1


async def test_statistics_snapshot_describes_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """statistics() is a frozen snapshot with the numbers a /metrics page needs."""
    journal = Journal()
    spec = recorder_spec("notifier", journal, mailbox=MailboxSettings(capacity=8))
    async with open_supervisor(SupervisorSpec("root", [spec])) as supervisor:
        await spec.ref.ask(Echo(1))
        with pytest.raises(UpstreamError):
            await spec.ref.ask(Echo(2, error=UpstreamError("x", dependency="ses", status=503)))
        with pytest.raises(ActorCrashed):
            await spec.ref.ask(Echo(3, crash=True))
        await trio.testing.wait_all_tasks_blocked()
        stats = spec.ref.statistics()
        tree = supervisor.statistics()
    assert stats.name == "notifier"
    assert stats.running
    assert (stats.capacity, stats.queued, stats.in_flight) == (8, 0, 0)
    assert (stats.received, stats.processed, stats.failed, stats.crashed) == (3, 1, 1, 1)
    assert stats.restarts == 1
    assert stats.breaker is None
    assert (tree.name, tree.children, tree.running, tree.restarts) == (
        "root",
        ("notifier",),
        ("notifier",),
        1,
    )
    with pytest.raises(AttributeError):
        stats.processed = 0  # type: ignore[misc]
