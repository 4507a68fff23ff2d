"""Supervisors: OTP-style restart strategies expressed with trio nurseries.

A supervisor owns a nursery; each child runs in it inside a cancel scope of its own.
Children start in order, each ready (``task_status.started``) before the next, and
stop in reverse order: first gracefully (``request_stop``) for up to the child's
``shutdown_s``, then by cancelling its scope. Graceful always precedes brutal.

When a child ends, the supervisor (one task, owning all of this state) decides what
to restart and when, by restart type, intensity, backoff and strategy: the policy
is described in ``_restart_policy``; starting and stopping one child is
``_child_runner``.

Commands (add or remove a child, stop) reach the supervisor through its control
channel, so its state has one owner and needs no lock. When ``run`` ends, the channel
closes: commands still queued, and any sent later, get ``ActorUnavailable``.

A child gone for good (stopped finally, or forgotten) has its spec closed
(``ChildSpec.close``), which refuses and answers its actors' messages, and leaves the
registry. Children added with ``start_child`` belong to one ``Supervisor``: they are
closed for good when its ``run`` ends (a restarted supervisor starts its static
children only, as in OTP).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio

from supervisors._child import ChildSpec, Restart
from supervisors._child_runner import _ChildRunner, _NeverStarted
from supervisors._control import (
    _Child,
    _Control,
    _Exited,
    _is_running,
    _RestartDue,
    _Run,
    _StartChild,
    _Stop,
    _TerminateChild,
)
from supervisors._errors import (
    ActorUnavailable,
    ChildStartFailed,
    RestartIntensityExceeded,
    SupervisionError,
)
from supervisors._mailbox import Reply
from supervisors._restart_policy import _backoff, _Intensity, _restart_group
from supervisors._supervisor_spec import Strategy, SupervisorSpec, SupervisorStatistics

__all__ = [
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "SupervisorStatistics",
    "open_supervisor",
]


class Supervisor:
    """A running supervisor. Start it with ``nursery.start(supervisor.run)``."""

    def __init__(self, spec: SupervisorSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self._settings = spec.restarts
        self._children: list[_Child] = [_Child(child) for child in spec.children]
        # Unbounded on purpose: control traffic is one exit notice per running child,
        # one timer per pending restart, plus rare admin commands; exit notices are
        # sent from sync code paths (a child's final ``finally``) that must never
        # block or drop one.
        self._control_send, self._control = trio.open_memory_channel[_Control](math.inf)
        self._intensity = _Intensity(spec.restarts)
        self._restarts = 0
        self._escalations = 0
        self._stop_requested = False
        self._timers: trio.Nursery | None = None
        self._log = structlog.get_logger("supervisors.supervisor").bind(supervisor=self.name)
        self._runner = _ChildRunner(self.name, spec.registry, self._log, self._send)
        names = [child.spec.name for child in self._children]
        if len(set(names)) != len(names):
            raise SupervisionError(
                f"duplicate child names in {self.name!r}: {names}",
                supervisor=self.name,
                child=",".join(names),
            )

    # -- public API -----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every child in order, report ready, supervise until stopped."""
        try:
            async with trio.open_nursery() as nursery:
                self._runner.nursery = nursery
                async with trio.open_nursery() as timers:
                    self._timers = timers
                    failure = await self._start_static_children()
                    if failure is None:
                        task_status.started(self)
                        failure = await self._supervise()
                    timers.cancel_scope.cancel()  # pending restarts will not happen
        finally:
            self._close_control()
            self._close_dynamic_children()
        if failure is not None:
            raise failure

    def request_stop(self, *, final: bool) -> None:
        """Stop every child in reverse order, then return from ``run``."""
        if self._stop_requested:
            return
        self._stop_requested = True
        with contextlib.suppress(trio.ClosedResourceError):  # run has ended already
            self._control_send.send_nowait(_Stop(final=final))

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add and start a child at the end of the start order; returns its handle.

        The caller owns the deadline (the supervisor may be busy restarting). Raises
        ``ActorUnavailable`` if the supervisor has stopped (or stops meanwhile), and
        ``SupervisionError`` for an actor spec that was stopped for good.
        """
        reply: Reply[Any] = Reply()
        self._send(_StartChild(spec, reply))
        return await reply.wait()

    def handle(self, name: str) -> Any:
        """What the running child ``name`` reported when it (re)started: an actor's
        address, the HTTP server's bound URLs (so a server can bind port 0)."""
        for child in self._children:
            if child.spec.name == name and _is_running(child):
                return child.current_handle
        raise ActorUnavailable(name, reason=f"no running child of {self.name!r} by that name")

    async def terminate_child(self, name: str) -> None:
        """Stop a child for good (graceful, then cancelled) and forget it."""
        reply: Reply[None] = Reply()
        self._send(_TerminateChild(name, reply))
        await reply.wait()

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            name=self.name,
            strategy=self.spec.strategy,
            children=tuple(child.spec.name for child in self._children),
            running=tuple(c.spec.name for c in self._children if _is_running(c)),
            restarts=self._restarts,
            escalations=self._escalations,
        )

    # -- the supervising task -------------------------------------------------

    async def _start_static_children(self) -> SupervisionError | None:
        for child in self._children:
            refusal = self._runner.refusal(child.spec)
            if refusal is not None:
                await self._stop_all(final=False)
                return refusal
            self._runner.register(child.spec)
            error = await self._runner.start(child)
            if error is not None:
                await self._stop_all(final=False)
                failure = ChildStartFailed(
                    f"child {child.spec.name!r} of {self.name!r} failed to start: {error!r}",
                    supervisor=self.name,
                    child=child.spec.name,
                )
                failure.__cause__ = error
                return failure
        return None

    async def _supervise(self) -> SupervisionError | None:
        while True:
            match await self._control.receive():
                case _Stop(final=final):
                    await self._stop_all(final=final)
                    return None
                case _Exited(child=child, run=run):
                    if run is child.current and not run.stopping:
                        escalation = await self._on_exit(child, run)
                        if escalation is not None:
                            return escalation
                case _RestartDue(child=child, group=group, delay=delay):
                    await self._restart(child, group, delay)
                case _StartChild(spec=spec, reply=reply):
                    await self._add(spec, reply)
                case _TerminateChild(name=name, reply=reply):
                    await self._terminate(name, reply)

    async def _on_exit(self, child: _Child, run: _Run) -> SupervisionError | None:
        spec = child.spec
        crashed = run.crash is not None
        child.current = None
        if crashed:
            self._log.error(
                "child_crashed",
                child=spec.name,
                error_type=type(run.crash).__name__,
                error=str(run.crash),
            )
        else:
            self._log.info("child_exited", child=spec.name)
        if not spec.restart.restarts_after(crashed=crashed):
            self._forget(child)
            return None

        now = trio.current_time()
        if self._intensity.exceeded(now):
            self._escalations += 1
            self._log.error(
                "supervisor_escalated",
                child=spec.name,
                max_restarts=self._settings.max_restarts,
                within_s=self._settings.within_s,
            )
            await self._stop_all(final=False)
            error = RestartIntensityExceeded(
                supervisor=self.name,
                child=spec.name,
                max_restarts=self._settings.max_restarts,
                within_s=self._settings.within_s,
            )
            error.__cause__ = run.crash
            return error

        if now - run.started_at >= self._settings.backoff_reset_s:
            child.consecutive_restarts = 0
        child.consecutive_restarts += 1
        delay = _backoff(self._settings, self.spec.jitter, child.consecutive_restarts)

        group = _restart_group(self.spec.strategy, self._children, child)
        for sibling in reversed(group):
            # A temporary sibling is not restarted (OTP): it stops for good.
            await self._runner.stop(sibling, final=sibling.spec.restart is Restart.TEMPORARY)
        for sibling in group:
            if sibling.spec.restart is Restart.TEMPORARY:
                self._forget(sibling)
        restarting = tuple(m for m in group if m.spec.restart is not Restart.TEMPORARY)

        if self._stop_requested:
            return None
        if delay > 0:
            assert self._timers is not None
            self._timers.start_soon(self._restart_after, _RestartDue(child, restarting, delay))
        else:
            await self._restart(child, restarting, delay)
        return None

    async def _restart_after(self, due: _RestartDue) -> None:
        await trio.sleep(due.delay)
        self._send(due)

    async def _restart(self, child: _Child, group: tuple[_Child, ...], delay: float) -> None:
        """Start the members of ``group`` that are still ours and still down, in order."""
        if self._stop_requested:
            return
        members = [m for m in group if m.current is None and m in self._children]
        if not members:
            return  # terminated, or restarted by a later group restart meanwhile
        self._restarts += 1
        self._log.warning(
            "child_restarted",
            child=child.spec.name,
            strategy=str(self.spec.strategy),
            restarted=[m.spec.name for m in members],
            consecutive=child.consecutive_restarts,
            delay_s=round(delay, 6),
        )
        for member in members:
            start_error = await self._runner.start(member)
            if start_error is not None:
                # A failed restart is a crash like any other: it counts against the
                # intensity and goes through the strategy again, which also starts
                # the members after it.
                failed = _Run(service=_NeverStarted(), crash=start_error)
                failed.started_at = trio.current_time()
                failed.exited.set()
                member.current = failed
                self._send(_Exited(member, failed))
                return

    async def _add(self, spec: ChildSpec, reply: Reply[Any]) -> None:
        if any(child.spec.name == spec.name for child in self._children):
            reply.set_error(
                SupervisionError(
                    f"{self.name!r} already has a child named {spec.name!r}",
                    supervisor=self.name,
                    child=spec.name,
                )
            )
            return
        refusal = self._runner.refusal(spec)
        if refusal is not None:
            reply.set_error(refusal)
            return
        child = _Child(spec, dynamic=True)
        try:
            self._runner.register(spec)
        except SupervisionError as taken:
            reply.set_error(taken)
            return
        start_error = await self._runner.start(child)
        if start_error is not None:
            self._runner.unregister(spec)
            failure = ChildStartFailed(
                f"child {spec.name!r} failed to start: {start_error!r}",
                supervisor=self.name,
                child=spec.name,
            )
            failure.__cause__ = start_error
            reply.set_error(failure)
            return
        self._children.append(child)
        assert child.current is not None
        reply.set_value(child.current_handle)

    async def _terminate(self, name: str, reply: Reply[None]) -> None:
        for child in self._children:
            if child.spec.name == name:
                await self._runner.stop(child, final=True)
                self._forget(child)
                reply.set_value(None)
                return
        reply.set_error(
            SupervisionError(
                f"{self.name!r} has no child {name!r}", supervisor=self.name, child=name
            )
        )

    async def _stop_all(self, *, final: bool) -> None:
        for child in reversed(self._children):
            await self._runner.stop(child, final=final)

    def _forget(self, child: _Child) -> None:
        self._children.remove(child)
        self._runner.close(child.spec)

    def _close_dynamic_children(self) -> None:
        for child in [c for c in self._children if c.dynamic]:
            self._forget(child)

    def _close_control(self) -> None:
        """``run`` has ended: refuse commands from now on, answer the queued ones."""
        self._control_send.close()
        while True:
            try:
                message = self._control.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            match message:
                case _StartChild(reply=reply) | _TerminateChild(reply=reply):
                    reply.set_error(ActorUnavailable(self.name, reason="supervisor stopped"))
        self._control.close()

    def _send(self, message: _Control) -> None:
        try:
            self._control_send.send_nowait(message)
        except trio.ClosedResourceError:
            raise ActorUnavailable(self.name, reason="supervisor stopped") from None


@asynccontextmanager
async def open_supervisor(spec: SupervisorSpec) -> AsyncIterator[Supervisor]:
    """Run a supervisor tree for the body; leaving the body stops it gracefully.

    - The body ends, or raises an ``Exception``: the tree stops for good (reverse
      order, graceful first); then the body's exception, if any, propagates as itself.
    - The body is cancelled: the tree is cancelled with it (brutal).
    - The tree fails (an escalation from the root, a child failing to start): the
      body is cancelled and the caller gets the tree's error in an ``ExceptionGroup``
      (the nursery's).

    However it ends, the root spec is then closed: no actor of the tree takes
    messages any more, and none it held is left unanswered.
    """
    body_error: Exception | None = None
    try:
        async with trio.open_nursery() as nursery:
            supervisor: Supervisor = await nursery.start(spec.create().run)
            try:
                yield supervisor
            except Exception as error:
                body_error = error  # re-raised once the tree has stopped gracefully
            finally:
                supervisor.request_stop(final=True)
    finally:
        spec.close()
    if body_error is not None:
        raise body_error
