"""Mailboxes: bounded queues of envelopes, with one-shot reply slots for asks."""

from __future__ import annotations

from typing import Any, cast

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
    """A one-shot reply slot: set exactly once by the actor, awaited by one asker.

    The asker's task sleeps on the slot itself (no Event, no parking lot): setting it
    reschedules that task directly. While an incarnation runs, the asker's deadline
    is kept by the actor's ``Timer`` instead of a cancel scope per ask; ``release``
    wakes the asker without an answer when that timer stops, so it keeps its deadline
    itself from then on.
    """

    __slots__ = ("_error", "_value", "_waiter", "abandoned", "done")

    def __init__(self) -> None:
        self.done = False
        self._value: R | None = None
        self._error: BaseException | None = None
        self._waiter: trio.lowlevel.Task | None = None
        # The asker stopped waiting (its deadline passed or it was cancelled).
        self.abandoned = False

    def set_value(self, value: R) -> None:
        if not self.done:
            self._value = value
            self._set()

    def set_error(self, error: BaseException) -> None:
        if not self.done:
            self._error = error
            self._set()

    def expire(self, error: BaseException) -> None:
        """The asker's deadline passed (seen by the actor's timer): it gets ``error``
        and nobody waits for the answer any more."""
        if not self.done:
            self.abandoned = True
            self.set_error(error)

    def release(self) -> None:
        """Wake the asker without an answer (its timer stopped): ``wait_watched`` is
        False and it waits on under a deadline of its own."""
        if self._waiter is not None:
            trio.lowlevel.reschedule(self._waiter)
            self._waiter = None

    def wanted(self) -> bool:
        """Someone still waits for this reply (work on it is not wasted)."""
        return not self.abandoned

    def _set(self) -> None:
        self.done = True
        self.release()

    async def wait(self) -> R:
        """The answer (a checkpoint either way); cancelled, the reply is abandoned."""
        while not await self.wait_watched():
            pass
        return self.unwrap()

    async def wait_watched(self) -> bool:
        """Sleep until the answer is set (True) or ``release`` (False)."""
        if self.done:
            await trio.lowlevel.checkpoint()
            return True
        assert self._waiter is None, "a reply has one asker"
        self._waiter = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._waiter = None
            self.abandoned = True
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return self.done

    def unwrap(self) -> R:
        """The answer set (raised, if an error); only once it is ``done``."""
        assert self.done
        if self._error is not None:
            error, self._error = self._error, None  # raised once: no reference cycle kept
            raise error
        return cast(R, self._value)


class Envelope[M]:
    """A message and where its answer goes (None for a tell)."""

    __slots__ = ("message", "reply")

    def __init__(self, message: M, reply: Reply[Any] | None) -> None:
        self.message = message
        self.reply = reply


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

    def reader_waiting(self) -> bool:
        """The reader sleeps on the empty queue (no message handed to it yet)."""
        return self._receive.statistics().tasks_waiting_receive > 0

    def queued(self) -> int:
        return self._receive.statistics().current_buffer_used
