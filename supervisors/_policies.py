"""Mailbox policies: how one actor runs each message.

Per message, outermost first (resilience4j's default order):

    retry (idempotent messages only)
      └─ circuit breaker (admission + verdict)
           └─ per-message timeout
                └─ the actor's handler

Each layer is optional and configured per actor. A breaker rejection is not retried
(the circuit stays open for seconds; retrying in milliseconds only adds load), a
``DomainError`` is neither a breaker failure nor retried, and nothing is retried once
its asker has stopped waiting. A handler whose nursery wraps one ``LomashError`` in an
exception group (beside tasks it cancelled) answered with that error, as if it had
raised it itself.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from config import RetrySettings
from supervisors._breaker import Breaker
from supervisors._errors import (
    ConnectionLost,
    Contention,
    DomainError,
    LomashError,
    MessageTimeout,
    OperationTimeout,
    UpstreamError,
)
from supervisors._groups import sole_error
from supervisors._mailbox import Idempotent
from supervisors._timer import Timer

__all__ = ["Jitter", "MessagePolicy", "RetryPolicy"]

# Draws a jitter offset in [low, high]; injectable so tests pin exact schedules.
type Jitter = Callable[[float, float], float]


def _always_wanted() -> bool:
    return True


class RetryPolicy:
    """Retries transient failures of idempotent messages with exponential backoff."""

    def __init__(self, name: str, settings: RetrySettings, jitter: Jitter = random.uniform) -> None:
        self._settings = settings
        self._jitter = jitter
        self._log = structlog.get_logger("supervisors.retry").bind(actor=name)
        self.retries = 0

    def is_transient(self, error: BaseException) -> bool:
        """The spec's retryable set: 429/502/503/504, connection reset, timeout (and a
        database serialization failure or deadlock, which rolled everything back)."""
        if isinstance(error, UpstreamError):
            return error.status in self._settings.retry_statuses
        return isinstance(error, ConnectionLost | Contention | OperationTimeout)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), jitter included."""
        s = self._settings
        base = s.base_delay_s * s.factor**retry
        return max(0.0, base + self._jitter(-s.jitter_s, s.jitter_s))

    async def run[R](
        self,
        attempt: Callable[..., Awaitable[R]],
        *args: Any,
        still_wanted: Callable[[], bool] = _always_wanted,
    ) -> R:
        """Run ``attempt(*args)``, retrying transient failures while ``still_wanted()``
        holds."""
        retry = 0
        while True:
            try:
                return await attempt(*args)
            except Exception as error:
                if (
                    retry >= self._settings.max_retries
                    or not self.is_transient(error)
                    or not still_wanted()
                ):
                    raise
                failure = error
            delay = self.delay(retry)
            await trio.sleep(delay)
            if not still_wanted():
                raise failure  # nobody waits for the answer any more: no further attempt
            retry += 1
            self.retries += 1
            self._log.info(
                "message_retried",
                retry=retry,
                delay_s=round(delay, 6),
                error_type=type(failure).__name__,
            )


@dataclass(slots=True)
class MessagePolicy:
    """The composed policy one actor applies to every message."""

    actor: str
    breaker: Breaker | None
    retry: RetryPolicy | None
    timeout_s: float | None
    # Keeps the per-message deadline while an incarnation runs (else a scope's own).
    timer: Timer | None = None
    timeouts: int = 0

    async def call[M, R](
        self,
        handle: Callable[[M], Awaitable[R]],
        message: M,
        *,
        still_wanted: Callable[[], bool] = _always_wanted,
    ) -> R:
        """Run ``handle(message)`` under the policy; ``still_wanted`` ends retries early."""
        if self.retry is not None and isinstance(message, Idempotent):
            return await self.retry.run(self._attempt, handle, message, still_wanted=still_wanted)
        if self.breaker is None:
            return await self._timed(handle, message)
        return await self._attempt(handle, message)

    async def _attempt[M, R](self, handle: Callable[[M], Awaitable[R]], message: M) -> R:
        breaker = self.breaker
        if breaker is None:
            return await self._timed(handle, message)
        permit = breaker.acquire()
        try:
            result = await self._timed(handle, message)
        except DomainError:
            breaker.record_success(permit)  # the dependency answered; the request was bad
            raise
        except Exception:
            breaker.record_failure(permit)
            raise
        except BaseException:
            breaker.release(permit)  # cancelled: no verdict, the trial permit goes back
            raise
        breaker.record_success(permit)
        return result

    async def _timed[M, R](self, handle: Callable[[M], Awaitable[R]], message: M) -> R:
        timeout_s = self.timeout_s
        timer = self.timer
        try:
            if timeout_s is None:
                return await handle(message)
            if timer is not None and timer.live:
                with trio.CancelScope() as scope:
                    running = timer.start(scope)
                    try:
                        return await handle(message)
                    finally:
                        timer.finish(running)
            else:
                with trio.move_on_after(timeout_s):
                    return await handle(message)
        except BaseExceptionGroup as group:
            answer = sole_error(group)
            if not isinstance(answer, LomashError):
                raise
        else:
            # The deadline passed. An outer cancellation that came with it is not a
            # timeout: let it through so the breaker releases instead of failing.
            await trio.lowlevel.checkpoint_if_cancelled()
            self.timeouts += 1
            raise MessageTimeout(self.actor, timeout_s)
        raise answer  # outside the except clause, so the answer keeps its own context
