"""Circuit breaker: Closed -> Open -> Half-Open -> Closed (or back to Open).

Semantics of the spec (opossum's ``errorThresholdPercentage`` / ``volumeThreshold`` /
``resetTimeout``):

- Closed: every call's outcome goes into a rolling window of ``window_s`` seconds kept
  as ``window_buckets`` buckets. After a failure, if the window holds at least
  ``min_calls`` calls and *more than* ``failure_ratio`` of them failed, the breaker opens.
- Open: calls fail at once with ``ServiceUnavailable(retry_after=<time left>)``.
- Half-Open (``reset_timeout_s`` after opening, evaluated lazily): up to
  ``half_open_max_calls`` trial calls go through; the rest are rejected. A trial
  failure re-opens, ``half_open_max_calls`` trial successes close (with a fresh
  window). A trial that is cancelled gives its permit back without a verdict.

Outcomes are classified by the caller: ``record_success`` / ``record_failure``; a
call that ended in neither (cancelled) is ``release``-d. Time is ``trio.current_time``
so the breaker runs on trio's virtual clock in tests.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import structlog
import trio

from config import BreakerSettings
from supervisors._errors import ServiceUnavailable

__all__ = ["Breaker", "BreakerState", "BreakerStatistics", "Permit"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    state: BreakerState
    window_calls: int
    window_failures: int
    opened: int
    half_opened: int
    closed: int
    rejected: int
    # The latest transitions, oldest first: (wall-clock time, the state entered).
    recent: tuple[tuple[float, BreakerState], ...] = ()


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; ``trial`` permits are the Half-Open probes."""

    trial: bool
    generation: int


RECENT_TRANSITIONS = 16


class Breaker:
    """One circuit, owned by one actor's mailbox (its state survives actor restarts)."""

    def __init__(self, name: str, settings: BreakerSettings) -> None:
        self.name = name
        self._settings = settings
        self._bucket_width = settings.window_s / settings.window_buckets
        self._log = structlog.get_logger("supervisors.breaker").bind(actor=name)
        self._state = BreakerState.CLOSED
        # (bucket index, calls, failures), oldest first; at most window_buckets entries.
        self._buckets: deque[list[int]] = deque()
        self._opened_at = 0.0
        self._trials_in_flight = 0
        self._trial_successes = 0
        # Bumped on every transition: outcomes of calls admitted under an older
        # generation do not count (a slow call from before the breaker opened).
        self._generation = 0
        # Every call admitted while Closed in one generation gets the same permit.
        self._closed_permit = Permit(trial=False, generation=0)
        self._opened = self._half_opened = self._closed = self._rejected = 0
        self._recent: deque[tuple[float, BreakerState]] = deque(maxlen=RECENT_TRANSITIONS)

    # -- admission ------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state, moving Open -> Half-Open once the reset timeout passed."""
        if (
            self._state is BreakerState.OPEN
            and trio.current_time() >= self._opened_at + self._settings.reset_timeout_s
        ):
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def check(self) -> None:
        """Fail fast if a call would be rejected now; takes no permit (used at enqueue)."""
        state = self.state
        if state is BreakerState.OPEN or (
            state is BreakerState.HALF_OPEN
            and self._trials_in_flight >= self._settings.half_open_max_calls
        ):
            raise self._reject()

    def acquire(self) -> Permit:
        """Admit one call or raise ``ServiceUnavailable``."""
        state = self.state
        if state is BreakerState.CLOSED:
            return self._closed_permit
        if (
            state is BreakerState.HALF_OPEN
            and self._trials_in_flight < self._settings.half_open_max_calls
        ):
            self._trials_in_flight += 1
            return Permit(trial=True, generation=self._generation)
        raise self._reject()

    # -- outcomes -------------------------------------------------------------

    def record_success(self, permit: Permit) -> None:
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._trials_in_flight -= 1
            self._trial_successes += 1
            if self._trial_successes >= self._settings.half_open_max_calls:
                self._transition(BreakerState.CLOSED)
        else:
            self._tally(failed=False)

    def record_failure(self, permit: Permit) -> None:
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._trials_in_flight -= 1
            self._transition(BreakerState.OPEN)
            return
        self._tally(failed=True)
        calls, failures = self._totals()
        if calls >= self._settings.min_calls and failures > self._settings.failure_ratio * calls:
            self._transition(BreakerState.OPEN)

    def release(self, permit: Permit) -> None:
        """The call ended without a verdict (cancelled): give a trial permit back."""
        if permit.trial and permit.generation == self._generation:
            self._trials_in_flight -= 1

    # -- observability --------------------------------------------------------

    def statistics(self) -> BreakerStatistics:
        state = self.state
        calls, failures = self._totals()
        return BreakerStatistics(
            state=state,
            window_calls=calls,
            window_failures=failures,
            opened=self._opened,
            half_opened=self._half_opened,
            closed=self._closed,
            rejected=self._rejected,
            recent=tuple(self._recent),
        )

    # -- internals ------------------------------------------------------------

    def _reject(self) -> ServiceUnavailable:
        self._rejected += 1
        if self._state is BreakerState.OPEN:
            retry_after = self._opened_at + self._settings.reset_timeout_s - trio.current_time()
        else:  # Half-Open with every trial permit taken: the next verdict is near.
            retry_after = 0.0
        return ServiceUnavailable(self.name, retry_after=max(retry_after, 0.0))

    def _transition(self, to: BreakerState) -> None:
        self._state = to
        self._recent.append((time.time(), to))  # for people (the ops page): wall clock
        self._generation += 1
        self._closed_permit = Permit(trial=False, generation=self._generation)
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._buckets.clear()
        if to is BreakerState.OPEN:
            self._opened += 1
            self._opened_at = trio.current_time()
            self._log.warning("breaker_opened", retry_after_s=self._settings.reset_timeout_s)
        elif to is BreakerState.HALF_OPEN:
            self._half_opened += 1
            self._log.info("breaker_half_opened")
        else:
            self._closed += 1
            self._log.info("breaker_closed")

    def _tally(self, *, failed: bool) -> None:
        index = self._prune()
        if self._buckets and self._buckets[-1][0] == index:
            bucket = self._buckets[-1]
        else:
            bucket = [index, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed

    def _prune(self) -> int:
        index = int(trio.current_time() // self._bucket_width)
        oldest = index - self._settings.window_buckets + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()
        return index

    def _totals(self) -> tuple[int, int]:
        self._prune()
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)
