"""What a supervisor supervises: child specs and the services they create.

A *child spec* is the recipe (name, restart type, shutdown budget, factory); every
start or restart asks it for a fresh *service*, an object with

- ``async run(task_status=...)``: does the work; calls ``task_status.started(handle)``
  once ready (the handle is what ``Supervisor.start_child`` returns), then runs until
  it is done or asked to stop;
- ``request_stop(final=...)``: asks it to finish gracefully. ``final=False`` means
  "stop for a restart" (an actor keeps its queued messages for its next
  incarnation); ``final=True`` means "stop for good" (an actor stops taking messages
  and drains what it already accepted).

A child spec is *closed* (``close()``) when its child is gone for good: stopped
finally, or forgotten by its supervisor. Closing is idempotent and sync; an actor
spec refuses messages from then on and answers the ones it still holds, a supervisor
spec closes its children.

Actors (``ActorSpec``) and supervisors (``SupervisorSpec``) are child specs; so is
``TaskSpec`` for any other long-running service (an HTTP server, a queue consumer);
``Forever`` makes a service of work that runs until it is cancelled (a subscription).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import trio

from config import RUNTIME_DEFAULTS

__all__ = ["ChildSpec", "Forever", "Restart", "Service", "TaskSpec"]


class Restart(StrEnum):
    """When a supervisor restarts a child that ended (OTP's restart types)."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only if it crashed; a normal exit removes it
    TEMPORARY = "temporary"  # never; any exit removes it

    def restarts_after(self, *, crashed: bool) -> bool:
        return self is Restart.PERMANENT or (self is Restart.TRANSIENT and crashed)


class Service(Protocol):
    """One incarnation of a child."""

    async def run(
        self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None: ...

    def request_stop(self, *, final: bool) -> None: ...


class ChildSpec(Protocol):
    """The recipe a supervisor restarts a child from."""

    @property
    def name(self) -> str: ...

    @property
    def restart(self) -> Restart: ...

    @property
    def shutdown_s(self) -> float: ...

    def create(self) -> Service: ...

    def close(self) -> None:
        """The child is gone for good: release what outlives its incarnations."""
        ...


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A child spec for any service: ``factory`` makes a fresh one per start."""

    name: str
    factory: Callable[[], Service]
    restart: Restart = Restart.PERMANENT
    shutdown_s: float = RUNTIME_DEFAULTS.child_shutdown_s

    def create(self) -> Service:
        return self.factory()

    def close(self) -> None:
        """Nothing outlives a task's incarnations."""


class Forever:
    """A service of ``work`` that runs until cancelled (a subscription, a watcher):
    asked to stop, it is cancelled; ended or crashed, its spec's restart decides."""

    def __init__(self, work: Callable[[], Awaitable[None]]) -> None:
        self._work = work
        self._scope = trio.CancelScope()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            task_status.started()
            await self._work()

    def request_stop(self, *, final: bool) -> None:
        self._scope.cancel()
