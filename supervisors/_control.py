"""The supervising task's private records: each child's incarnation, and the
messages on its control channel (exit notices, due restarts, commands, stop).

The supervising task owns all of it (a child's own task only records how its run
ended); everyone else reaches that task through messages, so none of it needs a lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from supervisors._child import ChildSpec, Service
from supervisors._mailbox import Reply


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


def _is_running(child: _Child) -> bool:
    return child.current is not None and not child.current.exited.is_set()
