"""An actor's incarnation: one run of its behaviour, reading the spec's mailbox.

``ActorSpec.create`` makes one per start; it enters the behaviour (if it is an async
context manager), reports the actor's address ready, serves the mailbox (serially or
``concurrency`` at a time) until it is stopped or crashes, then tears the behaviour
down. Everything that outlives it (mailbox, redelivery queue, counters, policies)
belongs to the ``ActorSpec``; the failure semantics are described in ``_actor``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any

import structlog
import trio

from supervisors._errors import ActorCrashed, ActorUnavailable, LomashError
from supervisors._groups import sole_error

if TYPE_CHECKING:
    from supervisors._actor import Actor, ActorSpec
    from supervisors._mailbox import Envelope


class _Incarnation[M, R]:
    """One run of an actor's behaviour, from start to crash or stop."""

    def __init__(self, spec: ActorSpec[M, R]) -> None:
        self._spec = spec
        self._stop = False
        self._final = False
        # Set while the reader waits on an empty mailbox: a restart-stop cancels it.
        # Serving serially it is the serving loop's one scope (``_waiting`` says the
        # reader waits, not a handler runs); concurrently, a scope per wait.
        self._wait: trio.CancelScope | None = None
        self._waiting = False

    def request_stop(self, *, final: bool) -> None:
        self._stop = True
        if final:
            # End-of-stream: refuse new messages, drain the accepted ones.
            self._final = True
            self._spec.mailbox.close_intake()
        elif self._wait is not None and self._waiting and self._spec.mailbox.reader_waiting():
            # Only a reader still asleep: one just handed a message handles it first.
            self._wait.cancel()

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        spec = self._spec
        behaviour = spec.factory()
        stack = AsyncExitStack()
        try:
            if isinstance(behaviour, AbstractAsyncContextManager):
                await stack.enter_async_context(behaviour)
            with structlog.contextvars.bound_contextvars(actor=spec.name):
                await self._serve(behaviour, task_status)
        except BaseException as error:
            await self._tear_down(stack, error)
            raise
        else:
            await self._tear_down(stack, None)
        finally:
            spec.counters.running = False
            if self._final:
                spec.fail_pending("stopped")

    async def _serve(self, behaviour: Actor[M, R], task_status: trio.TaskStatus[Any]) -> None:
        """Serve the mailbox with the actor's timer beside (it keeps the deadlines of
        asks and messages while this incarnation runs)."""
        spec = self._spec
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(spec.timer.run)
                spec.counters.running = True
                task_status.started(spec.ref)
                if spec.mailbox_settings.concurrency == 1:
                    await self._serve_serially(behaviour)
                else:
                    await self._serve_concurrently(behaviour)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The timer never fails: the group holds what serving raised, as raised
            # (beside the timer's own Cancelled when the whole incarnation is).
            _, rest = group.split(trio.Cancelled)
            if len(group.exceptions) == 1:
                error = group.exceptions[0]
            elif rest is None:
                error = group.exceptions[0]  # cancelled, all of it: one Cancelled
            else:
                raise
        else:
            return
        raise error  # outside the except clause, so it keeps its own context

    async def _tear_down(self, stack: AsyncExitStack, error: BaseException | None) -> None:
        """Exit the behaviour's context, shielded from a brutal stop but bounded.

        The behaviour's ``__aexit__`` sees the error that ended the incarnation; it
        cannot swallow it (a crash stays a crash, a cancellation a cancellation).
        """
        spec = self._spec
        with trio.move_on_after(spec.cleanup_s, shield=True) as cleanup:
            if error is None:
                await stack.aclose()
            else:
                await stack.__aexit__(type(error), error, error.__traceback__)
        if cleanup.cancelled_caught:
            spec.log.warning("actor_cleanup_timed_out", cleanup_s=spec.cleanup_s)

    def _keep_going(self) -> bool:
        # A restart-stop leaves the queue for the next incarnation; a final stop drains.
        return not self._stop or self._final

    async def _next(self) -> Envelope[M] | None:
        """The next envelope, redelivered ones first; None to stop or at end-of-stream.
        A checkpoint either way (the mailbox's receive is one)."""
        if self._stop and not self._final:
            return None
        spec = self._spec
        if spec.redelivery:
            await trio.lowlevel.checkpoint_if_cancelled()
            envelope = spec.redelivery.popleft()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return envelope
        if spec.mailbox_settings.concurrency == 1:
            return await self._wait_for_message()  # in the serving loop's scope
        return await self._wait_in_scope()

    async def _wait_for_message(self) -> Envelope[M] | None:
        # A memory-channel receive either returns a message or raises Cancelled, never
        # both; a restart-stop cancels the scope only while no message has been handed
        # over (``request_stop``), so a handed-over message is handled here.
        self._waiting = True
        try:
            return await self._spec.mailbox.receive()
        except trio.EndOfChannel:
            self._stop = self._final = True
            return None
        finally:
            self._waiting = False

    async def _wait_in_scope(self) -> Envelope[M] | None:
        with trio.CancelScope() as wait:
            self._wait = wait
            try:
                return await self._wait_for_message()
            finally:
                self._wait = None
        return None  # woken to stop for a restart

    async def _serve_serially(self, behaviour: Actor[M, R]) -> None:
        # One scope for the whole loop, cancelled by a restart-stop only while the
        # reader waits (no scope per wait: one less per message).
        with trio.CancelScope() as serving:
            self._wait = serving
            while self._keep_going():
                envelope = await self._next()
                if envelope is not None:
                    await self._process(behaviour, envelope)
                elif self._final:
                    return

    async def _serve_concurrently(self, behaviour: Actor[M, R]) -> None:
        bulkhead = trio.Semaphore(self._spec.mailbox_settings.concurrency)
        try:
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
        except BaseExceptionGroup as group:
            crash = sole_error(group)
            if crash is None:
                raise
        else:
            return
        # One handler crashed and its siblings were only cancelled: that error is the
        # crash (raised outside the except clause, so it keeps its own context).
        raise crash

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
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except trio.Cancelled:
            # Taken from the mailbox, but the incarnation was cancelled (a sibling
            # handler crashed, or a brutal stop) before this handler started: keep the
            # message for the next incarnation (or answer it, after a final stop).
            spec.redelivery.append(envelope)
            raise
        if reply is not None and reply.abandoned:
            counters.expired += 1  # the asker gave up before we got to it
            return
        counters.in_flight += 1
        try:
            result = await spec.policy.call(
                behaviour.handle,
                envelope.message,
                still_wanted=_always_wanted if reply is None else reply.wanted,
            )
        except LomashError as error:
            counters.failed += 1
            if reply is not None:
                reply.set_error(error)
            else:
                spec.log.warning("message_failed", error_type=type(error).__name__)
        except Exception as error:
            counters.crashed += 1
            if reply is not None:
                crashed = ActorCrashed(spec.name, error_type=_error_type(error))
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


def _always_wanted() -> bool:
    return True


def _error_type(error: Exception) -> str:
    """The name of what crashed: a group holding one real error names that error."""
    if isinstance(error, BaseExceptionGroup):
        return type(sole_error(error) or error).__name__
    return type(error).__name__
