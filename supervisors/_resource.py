"""Resources in a supervision tree: a pool or a client held open by a supervised child.

``Resource`` opens an async context manager when it starts, publishes the value in a
``Holder`` and closes it when stopped. Whoever starts after it in the tree reads
``holder.value`` when it starts; under ``rest_for_one`` a restarted resource restarts
everything after it, so nobody keeps a closed one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from supervisors._errors import ResourceUnavailable

__all__ = ["Holder", "Resource"]


class Holder[T]:
    """The current value of a resource, for whoever starts after it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._value: T | None = None

    @property
    def value(self) -> T:
        if self._value is None:
            raise ResourceUnavailable(self.name)
        return self._value

    def set(self, value: T | None) -> None:
        self._value = value


class Resource[T]:
    """A supervised child that holds an async context manager open until stopped."""

    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[T]], holder: Holder[T]):
        self._opener = opener
        self._holder = holder
        self._stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._opener() as value:
            self._holder.set(value)
            try:
                task_status.started(value)
                await self._stop.wait()
            finally:
                self._holder.set(None)

    def request_stop(self, *, final: bool) -> None:
        self._stop.set()
