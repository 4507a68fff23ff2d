"""Mailboxes: bounded queues of envelopes, with one-shot reply slots for asks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import outcome
import trio

from config import MailboxSettings, Overflow
from supervisors._errors import ActorUnavailable, MailboxFull

__all__ = ["WAKE_UP", "Envelope", "Idempotent", "Mailbox", "Reply"]


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


# Put in an empty mailbox to wake its idle reader; readers skip it. Cheaper than a
# cancel scope around every receive, and it cannot race with a message handover.
WAKE_UP: Envelope[Any] = Envelope(None, None)


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
        """Queue ``envelope`` under the overflow policy; never blocks forever."""
        try:
            self._send.send_nowait(envelope)
            return
        except trio.WouldBlock:
            if self._settings.overflow is Overflow.WAIT:
                with trio.move_on_after(self._settings.overflow_wait_s):
                    await self._send.send(envelope)
                    return
        except trio.ClosedResourceError:
            raise ActorUnavailable(self.name, reason="stopped") from None
        raise MailboxFull(
            self.name, capacity=self.capacity, retry_after=self._settings.full_retry_after_s
        )

    async def receive(self) -> Envelope[M]:
        return await self._receive.receive()

    def receive_nowait(self) -> Envelope[M]:
        return self._receive.receive_nowait()

    def wake_reader(self) -> None:
        """Wake a reader blocked on an empty mailbox (no-op if it is busy or closed)."""
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._send.send_nowait(WAKE_UP)

    def close_intake(self) -> None:
        self._closed = True
        self._send.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def queued(self) -> int:
        return self._receive.statistics().current_buffer_used
