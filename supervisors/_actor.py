"""Actors: a behaviour behind a stable address and a bounded mailbox.

``ActorSpec`` is the child spec a supervisor starts and restarts; it owns what must
survive restarts: the mailbox, the circuit breaker, the counters and the address
(``ActorRef``). Each start creates a fresh behaviour from ``factory`` and runs one
incarnation that reads the mailbox (``_Incarnation``, in ``_incarnation``).

Failure semantics:

- A handler raising a ``LomashError`` has *answered*: the asker gets that error, the
  actor carries on (expected failures are values, e.g. a provider outage).
- A handler raising anything else has *crashed*: the asker gets ``ActorCrashed``, the
  incarnation dies, the supervisor restarts it, and the messages queued behind the
  crashed one are handled by the new incarnation.
- With ``concurrency > 1`` a crash cancels the sibling handlers; messages already
  taken from the mailbox whose handler had not started yet go back to the spec's
  redelivery queue, which the next incarnation reads before the mailbox.
- A message in flight when the incarnation is cancelled (brutal stop) is answered
  with ``ActorUnavailable``. No asker is ever left waiting in silence; and every ask
  is bounded by the mailbox's ``ask_timeout_s`` in any case.
- A spec closed for good (``close()``) refuses every message and answers everything
  it still holds with ``ActorUnavailable``; a supervisor will not start it again.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
import trio

from config import RUNTIME_DEFAULTS, BreakerSettings, MailboxSettings, RetrySettings
from supervisors._breaker import Breaker, BreakerStatistics
from supervisors._child import Restart
from supervisors._errors import (
    ActorUnavailable,
    AskTimeout,
    LomashError,
)
from supervisors._incarnation import _Incarnation
from supervisors._mailbox import Envelope, Mailbox, Reply
from supervisors._policies import Jitter, MessagePolicy, RetryPolicy
from supervisors._timer import Timer

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
        deadline = trio.current_time() + timeout
        timer = spec.timer
        if timer.live:
            # The running incarnation's timer keeps the deadline (no scope per ask).
            await spec.enqueue(Envelope(message, reply))
            timer.watch(deadline, reply)
            try:
                if await reply.wait_watched():
                    answer: R = reply.unwrap()
                    return answer
            finally:
                timer.answered()
            # The timer stopped (the incarnation ended): keep the deadline ourselves.
        elif trio.current_effective_deadline() <= deadline:
            # The caller's own deadline comes first: it bounds the ask already.
            await spec.enqueue(Envelope(message, reply))
            caller_bounded: R = await reply.wait()
            return caller_bounded
        else:
            with trio.move_on_at(deadline):
                await spec.enqueue(Envelope(message, reply))
                result: R = await reply.wait()
                return result
            raise AskTimeout(spec.name, timeout)
        with trio.move_on_at(deadline):
            released: R = await reply.wait()
            return released
        raise AskTimeout(spec.name, timeout)

    async def tell(self, message: M) -> None:
        """Queue ``message`` without waiting for it to be handled.

        A full checkpoint: raises ``trio.Cancelled`` (queueing nothing) in a cancelled
        scope, and yields after queueing so a producer loop lets the actor run.
        """
        self._spec.admit()
        await self._spec.enqueue(Envelope(message, None))
        await trio.lowlevel.cancel_shielded_checkpoint()

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
        cleanup_s: float = RUNTIME_DEFAULTS.cleanup_s,
        jitter: Jitter = random.uniform,
    ) -> None:
        self.name = name
        self.restart = restart
        self.shutdown_s = shutdown_s
        self.cleanup_s = cleanup_s
        self.mailbox_settings = mailbox
        self.factory = factory
        self.mailbox: Mailbox[M] = Mailbox(name, mailbox)
        # Messages taken from the mailbox by an incarnation that was cancelled before
        # their handler started; the next incarnation reads them first. Unbounded on
        # purpose, yet never longer than ``concurrency``: one incarnation runs at a
        # time, and it takes at most that many messages before handling them.
        self.redelivery: deque[Envelope[M]] = deque()
        # Kept by a task beside each incarnation: asks' and messages' deadlines.
        self.timer = Timer(name, mailbox.ask_timeout_s, mailbox.message_timeout_s)
        self.policy = MessagePolicy(
            actor=name,
            breaker=Breaker(name, breaker) if breaker is not None else None,
            retry=RetryPolicy(name, retry, jitter) if retry is not None else None,
            timeout_s=mailbox.message_timeout_s,
            timer=self.timer,
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

    def close(self) -> None:
        """Stop for good (idempotent): refuse new messages, answer the held ones."""
        self.mailbox.close_intake()
        self.fail_pending("stopped")

    def fail_pending(self, reason: str) -> None:
        """Answer everything still held with ``ActorUnavailable`` (after a final stop)."""
        while self.redelivery:
            self._refuse(self.redelivery.popleft(), reason)
        while True:
            try:
                envelope = self.mailbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            self._refuse(envelope, reason)

    def _refuse(self, envelope: Envelope[M], reason: str) -> None:
        if envelope.reply is not None:
            envelope.reply.set_error(ActorUnavailable(self.name, reason=reason))

    def statistics(self) -> ActorStatistics:
        c = self.counters
        breaker = self.policy.breaker
        return ActorStatistics(
            name=self.name,
            running=c.running,
            capacity=self.mailbox.capacity,
            queued=self.mailbox.queued() + len(self.redelivery),
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
