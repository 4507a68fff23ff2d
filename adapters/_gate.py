"""A dependency gate: nobody waits for a dependency known to be down *or slow*.

States (one gate per connection target: the Postgres primary, its replica, Redis):

- **up**: calls go through. Each outcome is recorded with its duration. A refused
  or reset connection puts the gate down at once; so do ``slow_calls`` calls in a
  row that each timed out or took longer than ``slow_call_s`` (the dependency is
  slow: "slow (p99 2.01 s)").
- **down**: every call is refused at once with ``ConnectionLost(retry_after=...)``
  (no request joins a queue of requests that will all time out). A background
  probe (``watch``: a ping) runs after ``min_s``, doubling up to ``max_s``; a probe
  that fails, times out or takes longer than ``slow_call_s`` keeps the gate down; a
  fast one makes it
- **trial** (half-open): exactly one real call goes through; the others are still
  refused. The trial answering fast puts the gate up; failing, timing out or being
  slow puts it down again (the backoff goes on doubling). A trial cancelled before
  its verdict gives its place back.

Without a watcher (a gate used outside the service's tree, e.g. by ``lomash
migrate``) the first call after the probe is due is the trial itself. An explicit
``ping`` (``probe``) is a probe too: its verdict moves the gate as the watcher's
would. Outcomes of calls admitted before the gate last changed state are ignored
(a slow call from before the outage must not reopen it).

Time is ``trio.current_time``: the transitions are tested on trio's virtual clock.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import structlog
import trio

from supervisors import ConnectionLost, LomashError, OperationTimeout

__all__ = ["DependencyGate", "GateState", "GateStatistics", "Ticket", "describe_outage"]

_ERRNO = re.compile(r"Error (\d+) connecting")  # redis-py's wording
_REASONS = {errno.ECONNREFUSED: "connection refused", errno.ECONNRESET: "connection reset"}
# Latency samples kept for the p99 shown in /health and logs.
_SAMPLES = 128


def describe_outage(error: BaseException) -> str:
    """A short reason for a connection failure ("connection refused", "connection
    timeout", ...), whichever driver raised it; shown in /health and logs."""
    if isinstance(error, TimeoutError):
        return "connection timeout"
    number = getattr(error, "errno", None)
    match = _ERRNO.search(str(error))
    if number is None and match:
        number = int(match[1])
    if number in _REASONS:
        return _REASONS[number]
    if number is not None:
        return os.strerror(number).lower()
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:120]


class GateState(StrEnum):
    UP = "up"
    DOWN = "down"
    TRIAL = "trial"


@dataclass(frozen=True, slots=True)
class GateStatistics:
    state: GateState
    failures: int  # consecutive failed probes and trials (the backoff's exponent)
    outages: int  # times the gate went down
    last_error: str | None
    p99_s: float | None  # over the latest calls, timeouts counted at their deadline
    admitted: int  # calls let through (trials included; explicit probes not)
    refused: int  # calls refused at once while down

    @property
    def up(self) -> bool:
        return self.state is GateState.UP


@dataclass(frozen=True, slots=True)
class Ticket:
    """Leave to make one call; its outcome counts only in its own generation."""

    trial: bool
    generation: int


class DependencyGate:
    def __init__(
        self,
        dependency: str,
        *,
        min_s: float,
        max_s: float,
        slow_call_s: float,
        slow_calls: int,
    ) -> None:
        self.dependency = dependency
        self.slow_call_s = slow_call_s
        self._min_s = min_s
        self._max_s = max_s
        self._slow_calls = slow_calls
        self._state = GateState.UP
        self._generation = 0
        self._slow_in_a_row = 0
        self._failures = 0
        self._outages = 0
        self._down_since: float | None = None
        self._next_probe_at = 0.0
        self._trial_taken = False
        self._watched = False
        self._went_down = trio.Event()
        self._last_error: str | None = None
        self._samples: deque[float] = deque(maxlen=_SAMPLES)
        self._admitted = 0
        self._refused = 0
        self._log = structlog.get_logger("adapters.gate").bind(dependency=dependency)

    # -- admission ----------------------------------------------------------------

    @property
    def state(self) -> GateState:
        return self._state

    def outage(self) -> str | None:
        """Why calls are refused now (``None`` while up): "slow (p99 2.01 s)", ..."""
        return None if self._state is GateState.UP else self._last_error

    def admit(self) -> Ticket:
        """Let one call through, or raise ``ConnectionLost`` at once."""
        if self._state is GateState.UP:
            self._admitted += 1
            return Ticket(trial=False, generation=self._generation)
        now = trio.current_time()
        if self._state is GateState.DOWN and not self._watched and now >= self._next_probe_at:
            self._state = GateState.TRIAL  # unwatched: this caller is the probe
        if self._state is GateState.TRIAL and not self._trial_taken:
            self._trial_taken = True
            self._admitted += 1
            return Ticket(trial=True, generation=self._generation)
        self._refused += 1
        # A trial in flight decides soon; else the next probe is due.
        wait = self._min_s if self._state is GateState.TRIAL else self._next_probe_at - now
        raise ConnectionLost(
            f"{self.dependency} is unavailable ({self._last_error}); reconnecting",
            dependency=self.dependency,
            retry_after=max(wait, self._min_s),
        )

    # -- outcomes -----------------------------------------------------------------

    def succeeded(self, ticket: Ticket, duration_s: float) -> None:
        """The dependency answered (a constraint violation is an answer too)."""
        self._samples.append(duration_s)
        if ticket.generation != self._generation:
            return
        if duration_s > self.slow_call_s:
            self._slow(ticket, f"slow (p99 {self._p99_text()})")
            return
        self._slow_in_a_row = 0
        if ticket.trial:
            self._up()

    def timed_out(self, ticket: Ticket, timeout_s: float) -> None:
        self._samples.append(timeout_s)
        if ticket.generation == self._generation:
            self._slow(ticket, f"slow (p99 {self._p99_text()}, timeouts)")

    def failed(self, ticket: Ticket, reason: str) -> None:
        """The connection was refused, reset or lost: down at once."""
        if ticket.generation != self._generation:
            return
        self._down(reason)

    def release(self, ticket: Ticket) -> None:
        """The call ended without a verdict (cancelled): a trial's place goes back."""
        if ticket.trial and ticket.generation == self._generation:
            self._trial_taken = False

    async def call[T](
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        waits_s: float = 0.0,
        no_verdict: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Run ``attempt`` through the gate and record its outcome: a lost connection
        fails it, a timeout is a slow call, any other answer (errors of ours too)
        is a success with its duration, less ``waits_s`` (time it blocks on purpose);
        ``no_verdict`` errors and cancellation leave the gate as it was."""
        ticket = self.admit()
        started = trio.current_time()
        try:
            result = await attempt()
        except no_verdict:
            self.release(ticket)
            raise
        except ConnectionLost as lost:
            self.failed(ticket, lost.message)
            raise
        except OperationTimeout:
            self.timed_out(ticket, trio.current_time() - started)
            raise
        except LomashError:
            self.succeeded(ticket, trio.current_time() - started - waits_s)
            raise
        except BaseException:
            self.release(ticket)
            raise
        self.succeeded(ticket, trio.current_time() - started - waits_s)
        return result

    # -- probing ------------------------------------------------------------------

    async def probe(self, ping: Callable[[], Awaitable[None]], *, timeout_s: float) -> None:
        """Ping now, whatever the state (a health check, the watcher). Down: an answer
        within ``slow_call_s`` makes it a trial, anything else keeps it down (the
        backoff doubles). Up: the ping counts as a call. Raises what the ping raised,
        or ``OperationTimeout`` past ``timeout_s``; a slow answer returns."""
        started = trio.current_time()
        generation = self._generation
        ticket = Ticket(trial=self._state is not GateState.UP, generation=generation)
        try:
            with trio.fail_after(timeout_s):
                await ping()
        except (trio.TooSlowError, OperationTimeout) as error:
            self._samples.append(trio.current_time() - started)
            self._probe_failed(ticket, f"slow (p99 {self._p99_text()}, probe timed out)")
            if isinstance(error, OperationTimeout):
                raise
            raise OperationTimeout(
                f"{self.dependency} probe timed out",
                dependency=self.dependency,
                timeout_s=timeout_s,
            ) from None
        except ConnectionLost as lost:
            self._probe_failed(ticket, lost.message, refused=True)
            raise
        duration = trio.current_time() - started
        self._samples.append(duration)
        if generation != self._generation:
            return
        if duration > self.slow_call_s:
            self._probe_failed(ticket, f"slow (p99 {self._p99_text()})")
        elif self._state is GateState.DOWN:
            self._state = GateState.TRIAL
            self._trial_taken = False
            self._log.info("dependency_probe_answered", probe_s=round(duration, 3))
        else:
            self._slow_in_a_row = 0

    async def watch(self, ping: Callable[[], Awaitable[None]], *, timeout_s: float) -> None:
        """Forever: while the gate is down, probe it when the next probe is due."""
        self._watched = True
        try:
            while True:
                if self._state is not GateState.DOWN:
                    await self._went_down.wait()
                    continue
                await trio.sleep_until(self._next_probe_at)
                if self._state is GateState.DOWN:
                    # A failed probe is recorded: the gate stays down.
                    with contextlib.suppress(ConnectionLost, OperationTimeout):
                        await self.probe(ping, timeout_s=timeout_s)
        finally:
            self._watched = False

    # -- observability ------------------------------------------------------------

    def statistics(self) -> GateStatistics:
        return GateStatistics(
            state=self._state,
            failures=self._failures,
            outages=self._outages,
            last_error=self._last_error,
            p99_s=self._p99(),
            admitted=self._admitted,
            refused=self._refused,
        )

    # -- internals ----------------------------------------------------------------

    def _slow(self, ticket: Ticket, reason: str) -> None:
        self._slow_in_a_row += 1
        if ticket.trial or self._slow_in_a_row >= self._slow_calls:
            self._down(reason)

    def _probe_failed(self, ticket: Ticket, reason: str, *, refused: bool = False) -> None:
        if ticket.generation != self._generation:
            return
        if self._state is GateState.DOWN:
            self._backoff(reason)
        elif refused or ticket.trial:
            self._down(reason)
        else:
            self._slow(ticket, reason)

    def _down(self, reason: str) -> None:
        now = trio.current_time()
        if self._state is GateState.UP:
            self._outages += 1
            self._down_since = now
            self._failures = 0
            self._log.error("dependency_down", reason=reason)
        self._state = GateState.DOWN
        self._generation += 1
        self._trial_taken = False
        self._slow_in_a_row = 0
        self._went_down.set()
        self._went_down = trio.Event()
        self._backoff(reason)

    def _backoff(self, reason: str) -> None:
        self._failures += 1
        self._last_error = reason
        delay = min(self._max_s, self._min_s * 2 ** (self._failures - 1))
        self._next_probe_at = trio.current_time() + delay
        self._log.info("dependency_probe_due", reason=reason, next_probe_s=delay)

    def _up(self) -> None:
        if self._down_since is not None:
            self._log.warning(
                "dependency_recovered",
                down_s=round(trio.current_time() - self._down_since, 3),
                probes=self._failures,
            )
        self._state = GateState.UP
        self._generation += 1
        self._down_since = None
        self._failures = 0
        self._trial_taken = False

    def _p99(self) -> float | None:
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    def _p99_text(self) -> str:
        p99 = self._p99()
        return "n/a" if p99 is None else f"{p99:.2f} s"
