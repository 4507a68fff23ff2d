"""Retention: every ``trim_every_s`` forget completed jobs past 24 h and dead ones past 7 d,
and whatever else is given (idempotency keys past ``idempotency_keep_s``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
import trio

from jobs._queue import JobQueue
from supervisors import LomashError

__all__ = ["QueueTrimmer"]

log = structlog.get_logger("actors.trimmer")


class QueueTrimmer:
    """A supervised service; several processes trimming at once is harmless."""

    def __init__(
        self,
        queue: JobQueue,
        queues: Sequence[str],
        *,
        every_s: float,
        also: Sequence[tuple[str, Callable[[], Awaitable[int]]]] = (),
    ) -> None:
        self._queue = queue
        self._trims = [(name, _queue_trim(queue, name)) for name in queues] + list(also)
        self._every_s = every_s
        self._stop = trio.Event()
        self.trimmed = 0

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        while True:
            for name, trim in self._trims:
                try:
                    removed = await trim()
                except LomashError as error:  # the store is down: next round
                    log.warning("trim_failed", target=name, error=error.message)
                    continue
                self.trimmed += removed
                if removed:
                    log.info("trimmed", target=name, removed=removed)
            with trio.move_on_after(self._every_s):
                await self._stop.wait()
            if self._stop.is_set():
                return

    def request_stop(self, *, final: bool) -> None:
        self._stop.set()


def _queue_trim(queue: JobQueue, name: str) -> Callable[[], Awaitable[int]]:
    async def trim() -> int:
        return await queue.trim(name)

    return trim
