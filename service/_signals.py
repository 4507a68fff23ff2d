"""Run a supervision tree until SIGTERM/SIGINT, then stop it gracefully, bounded.

First signal: ``on_signal`` runs (turn readiness off, close a socket...), the tree
is asked to stop for good, and a hard deadline is armed. Second signal: the process
exits at once with ``EXIT_FORCED``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import structlog
import trio

from supervisors import Supervisor, SupervisorSpec

__all__ = ["EXIT_FORCED", "run_until_signalled"]

log = structlog.get_logger("gateway")

EXIT_FORCED = 1


async def _run_tree(
    spec: SupervisorSpec, done: trio.CancelScope, *, task_status: trio.TaskStatus[Supervisor]
) -> None:
    try:
        await spec.create().run(task_status=task_status)
    finally:
        done.cancel()  # the tree has stopped: stop listening for signals too


async def run_until_signalled(
    spec: SupervisorSpec,
    *,
    on_started: Callable[[Supervisor], None],
    on_signal: Callable[[str], None],
    hard_stop_s: float,
) -> int:
    """Returns 0 after a graceful stop, ``EXIT_FORCED`` if the hard deadline hit."""
    with (
        trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
        trio.CancelScope() as hard_stop,
    ):
        async with trio.open_nursery() as nursery:
            supervisor: Supervisor = await nursery.start(_run_tree, spec, nursery.cancel_scope)
            on_started(supervisor)
            stopping = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if stopping:
                    log.error("shutdown_forced", signal=name)
                    os._exit(EXIT_FORCED)
                stopping = True
                log.info("shutdown_started", signal=name)
                on_signal(name)
                supervisor.request_stop(final=True)
                hard_stop.deadline = trio.current_time() + hard_stop_s
    if hard_stop.cancelled_caught:
        log.error("shutdown_deadline_exceeded", hard_stop_s=hard_stop_s)
        return EXIT_FORCED
    log.info("shutdown_complete")
    return 0
