"""Property test: the breaker agrees with a plain reference model on any history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from config import BreakerSettings
from supervisors import Breaker, BreakerState, Permit, ServiceUnavailable

type Verdict = Literal["success", "failure", "cancel"]
type Op = (
    tuple[Literal["wait"], float]
    | tuple[Literal["call"], None]
    | tuple[Literal["end"], tuple[int, Verdict]]
    | tuple[Literal["once"], Verdict]
)


@dataclass
class Model:
    """The spec read literally: keep every call, recount the window each time."""

    settings: BreakerSettings
    state: BreakerState = BreakerState.CLOSED
    calls: list[tuple[float, bool]] = field(default_factory=list)  # (time, failed)
    opened_at: float = 0.0
    epoch: int = 0
    trials: int = 0
    trial_successes: int = 0

    def bucket(self, t: float) -> int:
        return math.floor(t / (self.settings.window_s / self.settings.window_buckets))

    def current(self, now: float) -> BreakerState:
        due = self.opened_at + self.settings.reset_timeout_s
        if self.state is BreakerState.OPEN and now >= due:
            self.move(BreakerState.HALF_OPEN, now)
        return self.state

    def move(self, to: BreakerState, now: float) -> None:
        self.state, self.epoch = to, self.epoch + 1
        self.calls, self.trials, self.trial_successes = [], 0, 0
        if to is BreakerState.OPEN:
            self.opened_at = now

    def admit(self, now: float) -> tuple[int, bool] | float:
        """(epoch, trial) if admitted, else the retry_after the caller should get."""
        state = self.current(now)
        if state is BreakerState.CLOSED:
            return (self.epoch, False)
        if state is BreakerState.HALF_OPEN:
            if self.trials < self.settings.half_open_max_calls:
                self.trials += 1
                return (self.epoch, True)
            return 0.0
        return self.opened_at + self.settings.reset_timeout_s - now

    def end(self, call: tuple[int, bool], verdict: Verdict, now: float) -> None:
        epoch, trial = call
        if epoch != self.epoch:
            return
        if trial:
            self.trials -= 1
            if verdict == "failure":
                self.move(BreakerState.OPEN, now)
            elif verdict == "success":
                self.trial_successes += 1
                if self.trial_successes >= self.settings.half_open_max_calls:
                    self.move(BreakerState.CLOSED, now)
            return
        if verdict == "cancel":
            return
        self.calls.append((now, verdict == "failure"))
        oldest = self.bucket(now) - self.settings.window_buckets + 1
        window = [failed for t, failed in self.calls if self.bucket(t) >= oldest]
        if (
            verdict == "failure"
            and len(window) >= self.settings.min_calls
            and sum(window) > self.settings.failure_ratio * len(window)
        ):
            self.move(BreakerState.OPEN, now)


waits = st.sampled_from([0.0, 0.25, 1.0, 5.0, 29.0, 30.0, 31.0, 59.0, 60.0, 61.0])
verdicts = st.sampled_from(["success", "failure", "failure", "cancel"])
ops = st.lists(
    st.one_of(
        # a call that ends at once: fills the window quickly
        st.tuples(st.just("once"), verdicts),
        st.tuples(st.just("wait"), waits),
        st.tuples(st.just("call"), st.none()),
        st.tuples(
            st.just("end"),
            st.tuples(st.integers(0, 7), verdicts),
        ),
    ),
    max_size=100,
)
configs = st.builds(
    BreakerSettings,
    failure_ratio=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
    min_calls=st.integers(1, 6),
    window_s=st.sampled_from([10.0, 60.0]),
    window_buckets=st.sampled_from([1, 10, 60]),
    reset_timeout_s=st.sampled_from([5.0, 30.0]),
    half_open_max_calls=st.integers(1, 3),
)


@settings(max_examples=1500, deadline=None)
@given(config=configs, history=ops)
def test_the_breaker_matches_the_reference_model(
    config: BreakerSettings, history: list[Op]
) -> None:
    """Same admissions, same rejections (with the same retry_after), same states."""
    clock = trio.testing.MockClock()

    async def replay() -> None:
        breaker = Breaker("model", config)
        model = Model(config)
        open_calls: list[tuple[Permit, tuple[int, bool]]] = []

        def end(call: tuple[Permit, tuple[int, bool]], verdict: Verdict) -> None:
            permit, model_call = call
            model.end(model_call, verdict, trio.current_time())
            if verdict == "success":
                breaker.record_success(permit)
            elif verdict == "failure":
                breaker.record_failure(permit)
            else:
                breaker.release(permit)

        for op, arg in history:
            now = trio.current_time()
            if op == "wait":
                assert isinstance(arg, float)
                clock.jump(arg)
            elif op in ("call", "once"):
                expected = model.admit(now)
                try:
                    permit = breaker.acquire()
                except ServiceUnavailable as rejected:
                    retry_after = rejected.retry_after
                    permit = None
                if permit is None:
                    assert isinstance(expected, float)
                    assert retry_after == max(expected, 0.0)
                else:
                    assert isinstance(expected, tuple)
                    assert permit.trial == expected[1]
                    open_calls.append((permit, expected))
                    if op == "once":
                        assert isinstance(arg, str)
                        end(open_calls.pop(), arg)
            elif open_calls:
                assert isinstance(arg, tuple)
                index, verdict = arg
                end(open_calls.pop(index % len(open_calls)), verdict)
            assert breaker.state is model.current(trio.current_time())

    trio.run(replay, clock=clock)
