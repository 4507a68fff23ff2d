"""Retry policy: only idempotent messages, only transient errors, 100/200/400 ms +-20 ms."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import trio

from config import BreakerSettings, MailboxSettings, RetrySettings
from supervisors import (
    ActorSpec,
    AskTimeout,
    ConnectionLost,
    DomainError,
    LomashError,
    MessageTimeout,
    ServiceUnavailable,
    SupervisorSpec,
    UpstreamError,
    open_supervisor,
)
from tests._behaviours import Echo, IdempotentEcho, Journal, max_jitter, no_jitter, recorder_spec

RETRY = RetrySettings()  # 3 retries, 0.1 s doubling, +-0.02 s, on 429/502/503/504


def attempt_times(journal: Journal) -> list[float]:
    return [t for t, what in journal.entries if " got " in what]


async def run_one(message: Echo, jitter: Any = no_jitter, **options: Any) -> tuple[Any, Journal]:
    journal = Journal()
    spec = recorder_spec("provider", journal, retry=RETRY, jitter=jitter, **options)
    async with open_supervisor(SupervisorSpec("root", [spec])):
        try:
            result: Any = await spec.ref.ask(message)
        except LomashError as error:
            result = error
    return result, journal


def upstream(status: int) -> UpstreamError:
    return UpstreamError(f"HTTP {status}", dependency="provider", status=status)


async def test_the_spec_schedule_is_the_default() -> None:
    """Defaults: 3 retries at 100, 200, 400 ms with +-20 ms jitter on 429/502/503/504."""
    assert RETRY.delays() == pytest.approx((0.1, 0.2, 0.4))
    assert RETRY.jitter_s == 0.02
    assert RETRY.retry_statuses == {429, 502, 503, 504}


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_idempotent_messages_retry_transient_statuses_on_schedule(
    autojump_clock: trio.testing.MockClock, status: int
) -> None:
    """Attempts at 0, 0.1, 0.3, 0.7 s; the last error is the answer."""
    error = upstream(status)
    result, journal = await run_one(IdempotentEcho("get", error=error))
    assert result is error
    assert attempt_times(journal) == pytest.approx([0.0, 0.1, 0.3, 0.7])


async def test_jitter_moves_each_delay_by_at_most_twenty_ms(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With the top of the jitter range drawn: 120, 220, 420 ms apart."""
    _, journal = await run_one(IdempotentEcho("get", error=upstream(503)), jitter=max_jitter)
    assert attempt_times(journal) == pytest.approx([0.0, 0.12, 0.34, 0.76])


async def test_real_jitter_stays_within_its_bounds(autojump_clock: trio.testing.MockClock) -> None:
    """With the default random source every gap is its base delay +-20 ms."""
    _, journal = await run_one(IdempotentEcho("get", error=upstream(503)), jitter=random.uniform)
    times = attempt_times(journal)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, base in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert base - 0.02 <= gap <= base + 0.02


@pytest.mark.parametrize(
    "error",
    [
        ConnectionLost("connection reset by peer", dependency="provider"),
        upstream(503),
    ],
)
async def test_a_retry_that_succeeds_answers_with_the_value(
    autojump_clock: trio.testing.MockClock, error: LomashError
) -> None:
    """Transient failures then success: the asker only sees the value."""
    journal = Journal()
    failures = iter([error, error])

    class Flaky:
        async def handle(self, message: Any) -> str:
            journal.add(f"x got {message}")
            failure = next(failures, None)
            if failure is not None:
                raise failure
            return "ok"

    spec: ActorSpec[Any, str] = ActorSpec("provider", Flaky, retry=RETRY, jitter=no_jitter)
    async with open_supervisor(SupervisorSpec("root", [spec])):
        assert await spec.ref.ask(IdempotentEcho("get")) == "ok"
        assert spec.ref.statistics().retries == 2
    assert attempt_times(journal) == pytest.approx([0.0, 0.1, 0.3])


async def test_timeouts_are_transient(autojump_clock: trio.testing.MockClock) -> None:
    """A per-message timeout (ETIMEDOUT) is retried like a 503."""
    result, journal = await run_one(
        IdempotentEcho("get", delay_s=10.0), mailbox=MailboxSettings(message_timeout_s=1.0)
    )
    assert isinstance(result, MessageTimeout)
    assert attempt_times(journal) == pytest.approx([0.0, 1.1, 2.3, 3.7])


async def test_non_idempotent_messages_are_never_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A booking or payment fails once and the caller decides (Idempotency-Key)."""
    error = upstream(503)
    result, journal = await run_one(Echo("pay", error=error))
    assert result is error
    assert attempt_times(journal) == [0.0]


@pytest.mark.parametrize(
    "error",
    [
        upstream(400),
        upstream(500),
        DomainError("slot taken"),
    ],
)
async def test_permanent_errors_are_not_retried(
    autojump_clock: trio.testing.MockClock, error: LomashError
) -> None:
    """Only 429/502/503/504, resets and timeouts are transient."""
    result, journal = await run_one(IdempotentEcho("get", error=error))
    assert result is error
    assert attempt_times(journal) == [0.0]


async def test_an_open_breaker_is_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    """Retrying into an open circuit only adds load: the rejection is the answer."""
    breaker = BreakerSettings(min_calls=1, failure_ratio=0.0)
    result, journal = await run_one(IdempotentEcho("get", error=upstream(503)), breaker=breaker)
    assert isinstance(result, ServiceUnavailable)
    assert attempt_times(journal) == [0.0]


async def test_retries_stop_once_the_asker_has_given_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An asker gone at 0.15 s: the retry due at 0.3 s is not attempted."""
    journal = Journal()
    mailbox = MailboxSettings(ask_timeout_s=0.15)
    spec = recorder_spec("provider", journal, retry=RETRY, jitter=no_jitter, mailbox=mailbox)
    async with open_supervisor(SupervisorSpec("root", [spec])):
        with pytest.raises(AskTimeout):
            await spec.ref.ask(IdempotentEcho("get", error=upstream(503)))
        assert trio.current_time() == 0.15
        await trio.sleep(5.0)
        assert spec.ref.statistics().retries == 1
    assert attempt_times(journal) == pytest.approx([0.0, 0.1])


async def test_tells_are_retried_to_the_end(autojump_clock: trio.testing.MockClock) -> None:
    """Nobody waits on a tell, yet it is wanted: every retry is made."""
    journal = Journal()
    spec = recorder_spec("provider", journal, retry=RETRY, jitter=no_jitter)
    async with open_supervisor(SupervisorSpec("root", [spec])):
        await spec.ref.tell(IdempotentEcho("get", error=upstream(503)))
        await trio.sleep(5.0)
    assert attempt_times(journal) == pytest.approx([0.0, 0.1, 0.3, 0.7])
