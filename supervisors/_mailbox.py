"""Mailboxes: bounded queues of envelopes, with one-shot reply slots for asks."""

from __future__ import annotations

from dataclasses import dataclass

import outcome
import trio

from config import MailboxSettings, Overflow
from supervisors._errors import ActorUnavailable, MailboxFull

__all__ = ["Envelope", "Idempotent", "Mailbox", "Reply"]


class Idempotent:
    """Marker base for message types that are safe to retry (reads, upserts by key).

    Only messages of such types are retried by an actor's retry policy; the spec
    forbids automatic retries of non-idempotent work (payments, bookings).
    """

    __slots__ = ()


class Reply[R]:
    """A one-shot reply slot: set exactly once by the actor, awaited by the asker."""

    __slots__ = ("_event", "_outcome", "abandoned")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._outcome: outcome.Outcome[R] | None = None
        # The asker stopped waiting (its deadline passed or it was cancelled).
        self.abandoned = False

    @property
    def done(self) -> bool:
        return self._outcome is not None

    def set_value(self, value: R) -> None:
        self._set(outcome.Value(value))

    def set_error(self, error: BaseException) -> None:
        self._set(outcome.Error(error))

    def wanted(self) -> bool:
        """Someone still waits for this reply (work on it is not wasted)."""
        return not self.abandoned

    def _set(self, result: outcome.Outcome[R]) -> None:
        if self._outcome is None:
            self._outcome = result
            self._event.set()

    async def wait(self) -> R:
        try:
            await self._event.wait()
        finally:
            if self._outcome is None:
                self.abandoned = True
        assert self._outcome is not None
        return self._outcome.unwrap()


@dataclass(frozen=True, slots=True)
class Envelope[M]:
    message: M
    reply: Reply[object] | None


class Mailbox[M]:
    """A bounded queue that outlives the actor incarnations reading it.

    The address (``ActorRef``) writes, the current incarnation reads. Restarts do not
    touch the queue, so nothing queued is lost. ``close_intake`` is end-of-stream:
    senders are refused from then on, the reader drains what is left.

    One send handle is shared by every sender instead of a clone per producer: an
    address is long-lived and held by many callers, and end-of-stream is decided by
    the actor's supervisor (a final stop), not by the senders.
    """

    def __init__(self, name: str, settings: MailboxSettings) -> None:
        self.name = name
        self.capacity = settings.capacity
        self._settings = settings
        self._send, self._receive = trio.open_memory_channel[Envelope[M]](settings.capacity)
        self._closed = False

    async def put(self, envelope: Envelope[M]) -> None:
        """Queue ``envelope`` under the overflow policy; never blocks forever.

        A sender in a cancelled scope gets ``trio.Cancelled`` and queues nothing. A
        sender refused because the actor stopped for good gets ``ActorUnavailable``,
        also when it was waiting for room (``Overflow.WAIT``) as the intake closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._send.send_nowait(envelope)
            return
        except trio.WouldBlock:
            if self._settings.overflow is not Overflow.WAIT:
                raise self._full() from None
        except trio.ClosedResourceError:
            raise self._stopped() from None
        with trio.move_on_after(self._settings.overflow_wait_s):
            try:
                await self._send.send(envelope)
            except trio.ClosedResourceError:
                raise self._stopped() from None
            return
        raise self._full()

    def _full(self) -> MailboxFull:
        return MailboxFull(
            self.name, capacity=self.capacity, retry_after=self._settings.full_retry_after_s
        )

    def _stopped(self) -> ActorUnavailable:
        return ActorUnavailable(self.name, reason="stopped")

    async def receive(self) -> Envelope[M]:
        return await self._receive.receive()

    def receive_nowait(self) -> Envelope[M]:
        return self._receive.receive_nowait()

    def close_intake(self) -> None:
        """End-of-stream (idempotent): refuse senders, waiting ones included."""
        self._closed = True
        self._send.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def queued(self) -> int:
        return self._receive.statistics().current_buffer_used
