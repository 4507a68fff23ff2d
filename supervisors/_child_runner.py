"""Running one child of a supervisor: start it, watch it end, stop it, close it.

A child starts in the supervisor's nursery inside a cancel scope of its own and
counts as started once it is ready (``task_status.started``); when it ends, an exit
notice goes to the supervisor's control channel. Stopping is graceful first
(``request_stop``) for up to the child's ``shutdown_s``, then brutal (its scope is
cancelled). A child gone for good has its spec closed and leaves the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from supervisors._actor import ActorSpec
from supervisors._child import ChildSpec
from supervisors._control import _Child, _Control, _Exited, _Run
from supervisors._errors import ChildStartFailed, SupervisionError
from supervisors._registry import Registry


class _ReadyProbe:
    """Passes ``started`` through to the real task status and remembers it was called."""

    def __init__(self, task_status: trio.TaskStatus[Any]) -> None:
        self._task_status = task_status
        self.ready = False

    def started(self, value: Any = None) -> None:
        self.ready = True
        self._task_status.started(value)


class _NeverStarted:
    """Stands in for a child whose restart failed before it was ready."""

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        raise AssertionError("never run")  # pragma: no cover

    def request_stop(self, *, final: bool) -> None:
        pass


class _ChildRunner:
    """Starts and stops the children of one supervisor, one incarnation at a time.

    It keeps no list of children (the supervisor owns that, and decides what to
    start, stop or close); ``nursery`` is the supervisor's, set while it runs.
    """

    def __init__(
        self,
        name: str,
        registry: Registry | None,
        log: Any,
        send: Callable[[_Control], None],
    ) -> None:
        self.name = name
        self.registry = registry
        self.nursery: trio.Nursery | None = None
        self._log = log
        self._send = send

    def refusal(self, spec: ChildSpec) -> SupervisionError | None:
        """An actor stopped for good cannot start again: its mailbox is closed."""
        if isinstance(spec, ActorSpec) and spec.mailbox.closed:
            return SupervisionError(
                f"actor {spec.name!r} was stopped for good; create a new ActorSpec "
                "to start it again",
                supervisor=self.name,
                child=spec.name,
            )
        return None

    async def start(self, child: _Child) -> Exception | None:
        """Start ``child`` and wait until it is ready; the error if it failed to."""
        assert self.nursery is not None
        run = _Run(service=child.spec.create())
        try:
            handle = await self.nursery.start(self._run_child, child, run)
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

    async def stop(self, child: _Child, *, final: bool) -> None:
        """Stop ``child`` gracefully, then brutally; close it too if ``final``."""
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
            self.close(child.spec)

    def close(self, spec: ChildSpec) -> None:
        """The child is gone for good: close its spec, take it out of the registry."""
        spec.close()
        self.unregister(spec)

    def register(self, spec: ChildSpec) -> None:
        if self.registry is not None and isinstance(spec, ActorSpec):
            self.registry.register(spec.ref)

    def unregister(self, spec: ChildSpec) -> None:
        if self.registry is not None and isinstance(spec, ActorSpec):
            self.registry.discard(spec.ref)
