"""Actors: a behaviour behind a stable address and a bounded mailbox.

``ActorSpec`` is the child spec a supervisor starts and restarts; it owns what must
survive restarts: the mailbox, the circuit breaker, the counters and the address
(``ActorRef``). Each start creates a fresh behaviour from ``factory`` and runs one
incarnation that reads the mailbox.

Failure semantics:

- A handler raising a ``LomashError`` has *answered*: the asker gets that error, the
  actor carries on (expected failures are values, e.g. a provider outage).
- A handler raising anything else has *crashed*: the asker gets ``ActorCrashed``, the
  incarnation dies, the supervisor restarts it, and the messages queued behind the
  crashed one are handled by the new incarnation.
- A message in flight when the incarnation is cancelled (brutal stop) is answered
  with ``ActorUnavailable``. No asker is ever left waiting in silence; and every ask
  is bounded by the mailbox's ``ask_timeout_s`` in any case.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
import trio

from config import RUNTIME_DEFAULTS, BreakerSettings, MailboxSettings, RetrySettings
from supervisors._breaker import Breaker, BreakerStatistics
from supervisors._child import Restart
from supervisors._errors import (
    ActorCrashed,
    ActorUnavailable,
    AskTimeout,
    LomashError,
)
from supervisors._mailbox import WAKE_UP, Envelope, Mailbox, Reply
from supervisors._policies import Jitter, MessagePolicy, RetryPolicy

__all__ = ["Actor", "ActorRef", "ActorSpec", "ActorStatistics"]


class Actor[M, R](Protocol):
    """A behaviour: handles one message at a time (or ``concurrency`` at a time).

    A behaviour that is also an async context manager is entered when its
    incarnation starts and exited when it stops (open connections there).
    """

    async def handle(self, message: M) -> R: ...


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    name: str
    running: bool
    capacity: int
    queued: int
    in_flight: int
    received: int
    processed: int
    failed: int
    crashed: int
    restarts: int
    rejected: int
    expired: int
    retries: int
    timeouts: int
    breaker: BreakerStatistics | None


@dataclass(slots=True)
class _Counters:
    received: int = 0
    processed: int = 0
    failed: int = 0
    crashed: int = 0
    restarts: int = 0
    rejected: int = 0
    expired: int = 0
    in_flight: int = 0
    starts: int = 0
    running: bool = False


class ActorRef[M, R]:
    """The stable address of an actor: valid across restarts of the behaviour."""

    __slots__ = ("_spec",)

    def __init__(self, spec: ActorSpec[M, R]) -> None:
        self._spec = spec

    @property
    def name(self) -> str:
        return self._spec.name

    async def ask(self, message: M) -> R:
        """Send ``message`` and wait for the reply, at most ``ask_timeout_s``.

        The caller's own deadline applies too; whichever is sooner wins. Raises the
        handler's ``LomashError``, ``ServiceUnavailable`` (circuit open),
        ``MailboxFull``, ``ActorCrashed``, ``ActorUnavailable`` or ``AskTimeout``.
        """
        spec = self._spec
        spec.admit()
        reply: Reply[Any] = Reply()
        timeout = spec.mailbox_settings.ask_timeout_s
        if trio.current_effective_deadline() <= trio.current_time() + timeout:
            # The caller's own deadline comes first: it bounds the ask already, and a
            # cancel scope per ask is the costliest part of the round trip.
            await spec.enqueue(Envelope(message, reply))
            caller_bounded: R = await reply.wait()
            return caller_bounded
        with trio.move_on_after(timeout):
            await spec.enqueue(Envelope(message, reply))
            result: R = await reply.wait()
            return result
        raise AskTimeout(spec.name, timeout)

    async def tell(self, message: M) -> None:
        """Queue ``message`` without waiting for it to be handled."""
        self._spec.admit()
        await self._spec.enqueue(Envelope(message, None))

    def statistics(self) -> ActorStatistics:
        return self._spec.statistics()

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"


class ActorSpec[M, R]:
    """Child spec of an actor, and owner of everything that outlives its restarts."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Actor[M, R]],
        *,
        mailbox: MailboxSettings = RUNTIME_DEFAULTS.mailbox,
        breaker: BreakerSettings | None = None,
        retry: RetrySettings | None = None,
        restart: Restart = Restart.PERMANENT,
        shutdown_s: float = RUNTIME_DEFAULTS.child_shutdown_s,
        jitter: Jitter = random.uniform,
    ) -> None:
        self.name = name
        self.restart = restart
        self.shutdown_s = shutdown_s
        self.mailbox_settings = mailbox
        self.factory = factory
        self.mailbox: Mailbox[M] = Mailbox(name, mailbox)
        self.policy = MessagePolicy(
            actor=name,
            breaker=Breaker(name, breaker) if breaker is not None else None,
            retry=RetryPolicy(name, retry, jitter) if retry is not None else None,
            timeout_s=mailbox.message_timeout_s,
        )
        self.counters = _Counters()
        self.ref: ActorRef[M, R] = ActorRef(self)
        self.log = structlog.get_logger("supervisors.actor").bind(actor=name)

    def create(self) -> _Incarnation[M, R]:
        if self.counters.starts:
            self.counters.restarts += 1
        self.counters.starts += 1
        return _Incarnation(self)

    def admit(self) -> None:
        """Fail fast at the door: an open circuit rejects before anything is queued."""
        if self.policy.breaker is not None:
            try:
                self.policy.breaker.check()
            except LomashError:
                self.counters.rejected += 1
                raise

    async def enqueue(self, envelope: Envelope[M]) -> None:
        try:
            await self.mailbox.put(envelope)
        except LomashError as error:
            self.counters.rejected += 1
            self.log.warning("mailbox_rejected", error_type=type(error).__name__)
            raise
        self.counters.received += 1

    def fail_pending(self, reason: str) -> None:
        """Answer everything still queued with ``ActorUnavailable`` (after a final stop)."""
        while True:
            try:
                envelope = self.mailbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if envelope is not WAKE_UP and envelope.reply is not None:
                envelope.reply.set_error(ActorUnavailable(self.name, reason=reason))

    def statistics(self) -> ActorStatistics:
        c = self.counters
        breaker = self.policy.breaker
        return ActorStatistics(
            name=self.name,
            running=c.running,
            capacity=self.mailbox.capacity,
            queued=self.mailbox.queued(),
            in_flight=c.in_flight,
            received=c.received,
            processed=c.processed,
            failed=c.failed,
            crashed=c.crashed,
            restarts=c.restarts,
            rejected=c.rejected,
            expired=c.expired,
            retries=self.policy.retry.retries if self.policy.retry is not None else 0,
            timeouts=self.policy.timeouts,
            breaker=breaker.statistics() if breaker is not None else None,
        )


class _Incarnation[M, R]:
    """One run of an actor's behaviour, from start to crash or stop."""

    def __init__(self, spec: ActorSpec[M, R]) -> None:
        self._spec = spec
        self._stop = False
        self._final = False
        self._idle = False

    def request_stop(self, *, final: bool) -> None:
        self._stop = True
        if final:
            # End-of-stream: refuse new messages, drain the accepted ones.
            self._final = True
            self._spec.mailbox.close_intake()
        elif self._idle:
            self._spec.mailbox.wake_reader()

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        spec = self._spec
        behaviour = spec.factory()
        try:
            async with AsyncExitStack() as stack:
                if isinstance(behaviour, AbstractAsyncContextManager):
                    await stack.enter_async_context(behaviour)
                with structlog.contextvars.bound_contextvars(actor=spec.name):
                    spec.counters.running = True
                    task_status.started(spec.ref)
                    if spec.mailbox_settings.concurrency == 1:
                        await self._serve_serially(behaviour)
                    else:
                        await self._serve_concurrently(behaviour)
        finally:
            spec.counters.running = False
            if self._final:
                spec.fail_pending("stopped")

    def _keep_going(self) -> bool:
        # A restart-stop leaves the queue for the next incarnation; a final stop drains.
        return not self._stop or self._final

    async def _next(self) -> Envelope[M] | None:
        """The next envelope; None when woken to stop or at end-of-stream."""
        if self._stop and not self._final:
            return None
        self._idle = True
        try:
            envelope = await self._spec.mailbox.receive()
        except trio.EndOfChannel:
            self._stop = True
            self._final = True
            return None
        finally:
            self._idle = False
        return None if envelope is WAKE_UP else envelope

    async def _serve_serially(self, behaviour: Actor[M, R]) -> None:
        while self._keep_going():
            envelope = await self._next()
            if envelope is not None:
                await self._process(behaviour, envelope)
            elif self._final:
                return

    async def _serve_concurrently(self, behaviour: Actor[M, R]) -> None:
        bulkhead = trio.Semaphore(self._spec.mailbox_settings.concurrency)
        async with trio.open_nursery() as nursery:
            while self._keep_going():
                await bulkhead.acquire()
                envelope = await self._next()
                if envelope is None:
                    bulkhead.release()
                    if self._final:
                        return
                    continue
                nursery.start_soon(self._process_and_release, behaviour, envelope, bulkhead)

    async def _process_and_release(
        self, behaviour: Actor[M, R], envelope: Envelope[M], bulkhead: trio.Semaphore
    ) -> None:
        try:
            await self._process(behaviour, envelope)
        finally:
            bulkhead.release()

    async def _process(self, behaviour: Actor[M, R], envelope: Envelope[M]) -> None:
        spec = self._spec
        counters = spec.counters
        reply = envelope.reply
        if reply is not None and reply.abandoned:
            counters.expired += 1  # the asker gave up before we got to it
            return
        counters.in_flight += 1
        try:
            result = await spec.policy.call(behaviour.handle, envelope.message)
        except LomashError as error:
            counters.failed += 1
            if reply is not None:
                reply.set_error(error)
            else:
                spec.log.warning("message_failed", error_type=type(error).__name__)
        except Exception as error:
            counters.crashed += 1
            if reply is not None:
                crashed = ActorCrashed(spec.name, error_type=type(error).__name__)
                crashed.__cause__ = error
                reply.set_error(crashed)
            raise
        else:
            counters.processed += 1
            if reply is not None:
                reply.set_value(result)
        finally:
            counters.in_flight -= 1
            if reply is not None and not reply.done:
                reply.set_error(ActorUnavailable(spec.name, reason="stopped while processing"))
