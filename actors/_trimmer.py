"""Retention: every ``trim_every_s`` forget completed jobs past 24 h and dead ones past 7 d."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
import trio

from adapters import JobQueue
from supervisors import LomashError

__all__ = ["QueueTrimmer"]

log = structlog.get_logger("actors.trimmer")


class QueueTrimmer:
    """A supervised service; several processes trimming at once is harmless."""

    def __init__(self, queue: JobQueue, queues: Sequence[str], *, every_s: float) -> None:
        self._queue = queue
        self._queues = tuple(queues)
        self._every_s = every_s
        self._stop = trio.Event()
        self.trimmed = 0

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        while True:
            for name in self._queues:
                try:
                    removed = await self._queue.trim(name)
                except LomashError as error:  # the queue is down: next round
                    log.warning("trim_failed", queue=name, error=error.message)
                    continue
                self.trimmed += removed
                if removed:
                    log.info("queue_trimmed", queue=name, removed=removed)
            with trio.move_on_after(self._every_s):
                await self._stop.wait()
            if self._stop.is_set():
                return

    def request_stop(self, *, final: bool) -> None:
        self._stop.set()
