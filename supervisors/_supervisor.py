"""Supervisors: OTP-style restart strategies expressed with trio nurseries.

A supervisor owns a nursery; each child runs in it inside a cancel scope of its own.
Children start in order, each ready (``task_status.started``) before the next, and
stop in reverse order: first gracefully (``request_stop``) for up to the child's
``shutdown_s``, then by cancelling its scope. Graceful always precedes brutal.

When a child ends, the supervisor (one task, owning all of this state) decides:

- restart type: permanent children always restart, transient ones only after a
  crash, temporary ones never;
- intensity: more than ``max_restarts`` restarts within ``within_s`` seconds and
  the supervisor stops every child and fails with ``RestartIntensityExceeded``,
  which its parent sees as a crash of this child (escalation);
- backoff: the first restart after a stable period is immediate; consecutive ones
  wait ``backoff_min_s * factor**(n-2)`` (capped, jittered); a child that ran for
  ``backoff_reset_s`` starts from scratch. The wait is a timer in the supervisor's
  nursery, not a sleep: meanwhile the supervisor handles other exits and commands;
- strategy: ``ONE_FOR_ONE`` restarts the child; ``ONE_FOR_ALL`` stops the others
  (reverse order) and restarts everyone (in order); ``REST_FOR_ONE`` does that for
  the children started after the failed one. Temporary children stopped with the
  group are not restarted (OTP): they are forgotten.

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
import random
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog
import trio

from config import RUNTIME_DEFAULTS, RestartSettings
from supervisors._actor import ActorSpec
from supervisors._child import ChildSpec, Restart, Service
from supervisors._errors import (
    ActorUnavailable,
    ChildStartFailed,
    RestartIntensityExceeded,
    SupervisionError,
)
from supervisors._mailbox import Reply
from supervisors._policies import Jitter
from supervisors._registry import Registry

__all__ = [
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "SupervisorStatistics",
    "open_supervisor",
]


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """Child spec of a supervisor (so supervisors nest into trees)."""

    name: str
    children: Sequence[ChildSpec]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    restarts: RestartSettings = RUNTIME_DEFAULTS.restart
    registry: Registry | None = None
    restart: Restart = Restart.PERMANENT
    jitter: Jitter = random.uniform

    @property
    def shutdown_s(self) -> float:
        """No budget of its own (OTP's ``infinity`` for supervisors).

        A stopping supervisor stops its children one by one, each within that child's
        own ``shutdown_s``, so its stop is bounded by its leaves, dynamic children
        included; a budget here could only cut their graceful stops short.
        """
        return math.inf

    def create(self) -> Supervisor:
        return Supervisor(self)

    def close(self) -> None:
        """The subtree is gone for good: close every static child, leave the registry."""
        for child in self.children:
            child.close()
            if self.registry is not None and isinstance(child, ActorSpec):
                self.registry.discard(child.ref)


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    name: str
    strategy: Strategy
    children: tuple[str, ...]
    running: tuple[str, ...]
    restarts: int
    escalations: int


@dataclass(slots=True, eq=False)
class _Run:
    """One incarnation of a child."""

    service: Service
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    exited: trio.Event = field(default_factory=trio.Event)
    started_at: float = 0.0
    crash: Exception | None = None
    stopping: bool = False


@dataclass(slots=True, eq=False)
class _Child:
    spec: ChildSpec
    current: _Run | None = None
    current_handle: Any = None
    consecutive_restarts: int = 0
    dynamic: bool = False  # added by start_child: lives as long as this Supervisor


@dataclass(frozen=True, slots=True)
class _Exited:
    child: _Child
    run: _Run


@dataclass(frozen=True, slots=True)
class _RestartDue:
    """A backoff timer expired: start ``group`` again (``child`` caused the restart)."""

    child: _Child
    group: tuple[_Child, ...]
    delay: float


@dataclass(frozen=True, slots=True)
class _StartChild:
    spec: ChildSpec
    reply: Reply[Any]


@dataclass(frozen=True, slots=True)
class _TerminateChild:
    name: str
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class _Stop:
    final: bool


type _Control = _Exited | _RestartDue | _StartChild | _TerminateChild | _Stop


class _ReadyProbe:
    """Passes ``started`` through to the real task status and remembers it was called."""

    def __init__(self, task_status: trio.TaskStatus[Any]) -> None:
        self._task_status = task_status
        self.ready = False

    def started(self, value: Any = None) -> None:
        self.ready = True
        self._task_status.started(value)


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
        self._restart_times: deque[float] = deque()
        self._restarts = 0
        self._escalations = 0
        self._stop_requested = False
        self._nursery: trio.Nursery | None = None
        self._timers: trio.Nursery | None = None
        self._log = structlog.get_logger("supervisors.supervisor").bind(supervisor=self.name)
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
                self._nursery = nursery
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
            refusal = self._refusal(child.spec)
            if refusal is not None:
                await self._stop_all(final=False)
                return refusal
            self._register(child.spec)
            error = await self._start(child)
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
        self._restart_times.append(now)
        while self._restart_times[0] <= now - self._settings.within_s:
            self._restart_times.popleft()
        if len(self._restart_times) > self._settings.max_restarts:
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
        delay = self._backoff(child.consecutive_restarts)

        index = self._children.index(child)
        match self.spec.strategy:
            case Strategy.ONE_FOR_ONE:
                group = [child]
            case Strategy.ONE_FOR_ALL:
                group = list(self._children)
            case Strategy.REST_FOR_ONE:
                group = self._children[index:]
        for sibling in reversed(group):
            # A temporary sibling is not restarted (OTP): it stops for good.
            await self._stop_child(sibling, final=sibling.spec.restart is Restart.TEMPORARY)
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
            start_error = await self._start(member)
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

    def _backoff(self, consecutive: int) -> float:
        if consecutive <= 1:
            return 0.0
        s = self._settings
        base = min(s.backoff_max_s, s.backoff_min_s * s.backoff_factor ** (consecutive - 2))
        return max(0.0, base * (1.0 + self.spec.jitter(-s.backoff_jitter, s.backoff_jitter)))

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
        refusal = self._refusal(spec)
        if refusal is not None:
            reply.set_error(refusal)
            return
        child = _Child(spec, dynamic=True)
        try:
            self._register(spec)
        except SupervisionError as taken:
            reply.set_error(taken)
            return
        start_error = await self._start(child)
        if start_error is not None:
            self._unregister(spec)
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
                await self._stop_child(child, final=True)
                self._forget(child)
                reply.set_value(None)
                return
        reply.set_error(
            SupervisionError(
                f"{self.name!r} has no child {name!r}", supervisor=self.name, child=name
            )
        )

    # -- starting and stopping children ---------------------------------------

    def _refusal(self, spec: ChildSpec) -> SupervisionError | None:
        """An actor stopped for good cannot start again: its mailbox is closed."""
        if isinstance(spec, ActorSpec) and spec.mailbox.closed:
            return SupervisionError(
                f"actor {spec.name!r} was stopped for good; create a new ActorSpec "
                "to start it again",
                supervisor=self.name,
                child=spec.name,
            )
        return None

    async def _start(self, child: _Child) -> Exception | None:
        assert self._nursery is not None
        run = _Run(service=child.spec.create())
        try:
            handle = await self._nursery.start(self._run_child, child, run)
        except Exception as error:
            return error
        run.started_at = trio.current_time()
        child.current = run
        child.current_handle = handle
        return None

    async def _run_child(
        self, child: _Child, run: _Run, *, task_status: trio.TaskStatus[Any]
    ) -> None:
        probe = _ReadyProbe(task_status)
        try:
            with run.scope:
                await run.service.run(task_status=probe)
            if not probe.ready:
                raise ChildStartFailed(
                    f"child {child.spec.name!r} returned before it was ready",
                    supervisor=self.name,
                    child=child.spec.name,
                )
        except Exception as error:
            if not probe.ready:
                raise
            run.crash = error
        finally:
            run.exited.set()
        self._send(_Exited(child, run))

    async def _stop_child(self, child: _Child, *, final: bool) -> None:
        run = child.current
        if run is not None and not run.exited.is_set():
            run.stopping = True
            run.service.request_stop(final=final)
            with trio.move_on_after(child.spec.shutdown_s):
                await run.exited.wait()
            if not run.exited.is_set():
                self._log.warning(
                    "child_killed", child=child.spec.name, shutdown_s=child.spec.shutdown_s
                )
                run.scope.cancel()
                await run.exited.wait()
            if run.crash is not None:
                self._log.error(
                    "child_crashed_while_stopping",
                    child=child.spec.name,
                    error_type=type(run.crash).__name__,
                    error=str(run.crash),
                )
            self._log.info("child_stopped", child=child.spec.name, final=final)
        child.current = None
        if final:
            self._close(child.spec)

    async def _stop_all(self, *, final: bool) -> None:
        for child in reversed(self._children):
            await self._stop_child(child, final=final)

    def _forget(self, child: _Child) -> None:
        self._children.remove(child)
        self._close(child.spec)

    def _close(self, spec: ChildSpec) -> None:
        """The child is gone for good: close its spec, take it out of the registry."""
        spec.close()
        self._unregister(spec)

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

    def _register(self, spec: ChildSpec) -> None:
        if self.spec.registry is not None and isinstance(spec, ActorSpec):
            self.spec.registry.register(spec.ref)

    def _unregister(self, spec: ChildSpec) -> None:
        if self.spec.registry is not None and isinstance(spec, ActorSpec):
            self.spec.registry.discard(spec.ref)

    def _send(self, message: _Control) -> None:
        try:
            self._control_send.send_nowait(message)
        except trio.ClosedResourceError:
            raise ActorUnavailable(self.name, reason="supervisor stopped") from None


def _is_running(child: _Child) -> bool:
    return child.current is not None and not child.current.exited.is_set()


class _NeverStarted:
    """Stands in for a child whose restart failed before it was ready."""

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        raise AssertionError("never run")  # pragma: no cover

    def request_stop(self, *, final: bool) -> None:
        pass


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
