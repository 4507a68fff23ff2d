"""The dependency gate on trio's virtual clock: slow is down, probes, the half-open trial.

Exact times: with ``min_s`` 1 and ``max_s`` 8 the probes after an outage are due
1, 2, 4, 8, 8 ... seconds after each failed one; ``slow_call_s`` is 1 s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from adapters import DependencyGate, GateState
from supervisors import ConnectionLost, OperationTimeout

SLOW_CALLS = 3


def state(g: DependencyGate) -> GateState:
    """The gate's state now (a call: each look is a fresh one)."""
    return g.state


def gate() -> DependencyGate:
    return DependencyGate("db", min_s=1.0, max_s=8.0, slow_call_s=1.0, slow_calls=SLOW_CALLS)


async def call(g: DependencyGate, seconds: float, *, timeout_s: float = 5.0) -> None:
    """One call through the gate that takes ``seconds`` (or times out at ``timeout_s``)."""

    async def attempt() -> None:
        with trio.move_on_after(timeout_s) as deadline:
            await trio.sleep(seconds)
        if deadline.cancelled_caught:
            raise OperationTimeout("timed out", dependency="db", timeout_s=timeout_s)

    await g.call(attempt)


def pinger(latencies: list[float]) -> Callable[[], Awaitable[None]]:
    """A ping whose n-th answer takes latencies[n] (the last one repeats)."""
    answered: list[float] = []

    async def ping() -> None:
        delay = latencies[min(len(answered), len(latencies) - 1)]
        answered.append(delay)
        await trio.sleep(delay)

    return ping


async def test_slow_calls_in_a_row_take_it_down_and_then_nobody_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three calls of 1.5 s in a row: down at the third; the next is refused at once."""
    g = gate()
    for _ in range(SLOW_CALLS - 1):
        await call(g, 1.5)
    assert state(g) is GateState.UP
    await call(g, 1.5)
    assert state(g) is GateState.DOWN
    assert g.outage() == "slow (p99 1.50 s)"
    started = trio.current_time()
    with pytest.raises(ConnectionLost, match=r"db is unavailable \(slow \(p99 1.50 s\)\)") as no:
        await call(g, 0.0)
    assert trio.current_time() == started  # not a moment waited
    assert no.value.retry_after == 1.0
    stats = g.statistics()
    assert (stats.outages, stats.admitted, stats.refused, stats.p99_s) == (1, 3, 1, 1.5)


async def test_a_fast_call_between_slow_ones_keeps_it_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Slow, slow, fast, slow, slow: never three slow in a row, never down."""
    g = gate()
    for seconds in (1.5, 1.5, 0.01, 1.5, 1.5):
        await call(g, seconds)
    assert state(g) is GateState.UP


async def test_timeouts_count_as_slow_calls(autojump_clock: trio.testing.MockClock) -> None:
    """Calls that hit their 5 s deadline are slow calls: the third one takes it down."""
    g = gate()
    for n in range(SLOW_CALLS):
        with pytest.raises(OperationTimeout):
            await call(g, 60.0)
        assert trio.current_time() == 5.0 * (n + 1)
    assert state(g) is GateState.DOWN
    assert g.outage() == "slow (p99 5.00 s, timeouts)"


async def test_a_refused_connection_takes_it_down_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One ConnectionLost is enough."""
    g = gate()
    g.failed(g.admit(), "connection refused")
    assert (g.state, g.outage()) == (GateState.DOWN, "connection refused")


async def test_the_watcher_probes_with_backoff_then_one_fast_trial_reopens_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Down at t=0; probes at 1 and 5 (2 s each: slow), 11 (fast): trial; one call is the
    trial, the others are refused meanwhile; the trial answering fast reopens it."""
    g = gate()
    g.failed(g.admit(), "slow")
    probes: list[float] = []
    slow_ping = pinger([2.0, 2.0, 0.01])

    async def ping() -> None:
        probes.append(trio.current_time())
        await slow_ping()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: g.watch(ping, timeout_s=5.0))
        await trio.sleep_until(1.0 + 2.0 + 0.001)  # first probe: 1..3 s, slow
        assert state(g) is GateState.DOWN
        assert g.outage() == "slow (p99 2.00 s)"
        # Slow probes keep it down; the next ones wait 2 s then 4 s after each.
        await trio.sleep_until(11.0 - 0.001)
        assert state(g) is GateState.DOWN
        await trio.sleep_until(11.0 + 0.01 + 0.001)
        assert probes == [1.0, 5.0, 11.0]
        assert state(g) is GateState.TRIAL
        trial = g.admit()
        assert trial.trial
        with pytest.raises(ConnectionLost) as meanwhile:
            g.admit()
        assert meanwhile.value.retry_after == 1.0
        g.succeeded(trial, 0.02)
        assert state(g) is GateState.UP
        await call(g, 0.01)  # everyone goes through again
        nursery.cancel_scope.cancel()
    stats = g.statistics()
    assert (stats.outages, stats.failures, stats.refused) == (1, 0, 1)


async def test_a_trial_that_times_out_puts_it_down_again_with_a_longer_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Down at 0 (backoff 1 s), probe at 1 answers fast: trial; the trial times out
    at 5 s: down again, next probe 2 s later (the backoff went on doubling)."""
    g = gate()
    g.failed(g.admit(), "connection refused")
    await trio.sleep(1.0)
    await g.probe(pinger([0.01]), timeout_s=5.0)
    assert state(g) is GateState.TRIAL
    with pytest.raises(OperationTimeout):
        await call(g, 60.0)
    assert state(g) is GateState.DOWN
    assert g.outage() == "slow (p99 5.00 s, timeouts)"
    with pytest.raises(ConnectionLost) as refused:
        g.admit()
    assert refused.value.retry_after == pytest.approx(2.0)


async def test_a_cancelled_trial_gives_its_place_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The trial's caller gave up before a verdict: the next caller is the trial."""
    g = gate()
    g.failed(g.admit(), "connection refused")
    await trio.sleep(1.0)
    await g.probe(pinger([0.01]), timeout_s=5.0)
    g.release(g.admit())
    assert g.admit().trial


async def test_a_probe_that_times_out_keeps_it_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A probe past its deadline is a timeout: refused, down, backoff doubled."""
    g = gate()
    g.failed(g.admit(), "connection refused")
    with pytest.raises(OperationTimeout):
        await g.probe(pinger([60.0]), timeout_s=5.0)
    assert trio.current_time() == 5.0
    assert state(g) is GateState.DOWN
    assert g.outage() == "slow (p99 5.00 s, probe timed out)"


async def test_outcomes_of_calls_from_before_the_outage_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A slow call admitted while up that ends after the gate reopened changes nothing;
    neither does a fast one ending while the gate is down."""
    g = gate()
    old = g.admit()
    g.failed(g.admit(), "connection refused")
    g.succeeded(old, 0.01)
    assert state(g) is GateState.DOWN
    await trio.sleep(1.0)
    await g.probe(pinger([0.01]), timeout_s=5.0)
    g.succeeded(g.admit(), 0.01)
    assert state(g) is GateState.UP
    g.timed_out(old, 5.0)
    g.failed(old, "connection reset")
    assert state(g) is GateState.UP


async def test_without_a_watcher_the_first_call_after_the_backoff_is_the_trial(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Unwatched (``lomash migrate``): refused for 1 s, then one caller probes."""
    g = gate()
    g.failed(g.admit(), "connection refused")
    with pytest.raises(ConnectionLost):
        g.admit()
    await trio.sleep(1.0)
    trial = g.admit()
    assert trial.trial
    with pytest.raises(ConnectionLost):
        g.admit()
    g.succeeded(trial, 0.01)
    assert state(g) is GateState.UP


async def test_a_slow_health_ping_while_up_counts_as_one_slow_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An explicit ping answering in 2 s while up is one slow call, not an outage."""
    g = gate()
    await g.probe(pinger([2.0]), timeout_s=5.0)
    assert state(g) is GateState.UP
    for _ in range(SLOW_CALLS - 1):
        await call(g, 1.5)
    assert state(g) is GateState.DOWN
