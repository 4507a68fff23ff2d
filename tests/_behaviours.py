"""Small actor behaviours and services the runtime tests drive."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import trio

from supervisors import ActorSpec, Idempotent, LomashError, Restart, TaskSpec


@dataclass(frozen=True, slots=True)
class Echo:
    """Reply with ``value`` after ``delay_s``; ``crash`` raises a bug, ``error`` a LomashError."""

    value: Any = None
    delay_s: float = 0.0
    crash: bool = False
    error: LomashError | None = None


@dataclass(frozen=True, slots=True)
class IdempotentEcho(Echo, Idempotent):
    """The same, marked safe to retry."""


@dataclass
class Journal:
    """What behaviours saw, with virtual timestamps, shared across incarnations."""

    entries: list[tuple[float, str]] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.entries.append((trio.current_time(), what))

    def events(self) -> list[str]:
        return [what for _, what in self.entries]


class Recorder:
    """Handles ``Echo``: records each message in the journal, tagged with its incarnation."""

    def __init__(self, journal: Journal, incarnation: int) -> None:
        self.journal = journal
        self.incarnation = incarnation

    async def handle(self, message: Echo) -> Any:
        self.journal.add(f"#{self.incarnation} got {message.value}")
        await trio.sleep(message.delay_s)
        if message.crash:
            raise KeyError(message.value)
        if message.error is not None:
            raise message.error
        return message.value


def recorder_spec(name: str, journal: Journal, **options: Any) -> ActorSpec[Echo, Any]:
    """An ActorSpec whose every incarnation records to ``journal``."""
    count = 0

    def factory() -> Recorder:
        nonlocal count
        count += 1
        journal.add(f"{name} started #{count}")
        return Recorder(journal, count)

    return ActorSpec(name, factory, **options)


class Worker:
    """A plain supervised service that journals its life, and crashes or exits on cue."""

    def __init__(
        self, name: str, journal: Journal, *, ignore_stop: bool = False, start_s: float = 0.0
    ) -> None:
        self.name = name
        self.journal = journal
        self.ignore_stop = ignore_stop
        self.start_s = start_s
        self._wake = trio.Event()
        self._why = ""

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(self.start_s)
        self.journal.add(f"{self.name} up")
        task_status.started(self)
        try:
            await self._wake.wait()
        except trio.Cancelled:
            self.journal.add(f"{self.name} cancelled")
            raise
        if self._why == "crash":
            raise RuntimeError(f"{self.name} crashed")
        self.journal.add(f"{self.name} down")

    def request_stop(self, *, final: bool) -> None:
        self.journal.add(f"{self.name} asked to stop")
        if not self.ignore_stop:
            self._exit("stop")

    def crash(self) -> None:
        self._exit("crash")

    def finish(self) -> None:
        self._exit("finish")

    def _exit(self, why: str) -> None:
        self._why = why
        self._wake.set()


class Workers:
    """Creates ``Worker``s per start and remembers the latest one of each name."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.latest: dict[str, Worker] = {}

    def spec(
        self,
        name: str,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_s: float = 5.0,
        ignore_stop: bool = False,
        start_s: float = 0.0,
    ) -> TaskSpec:
        def factory() -> Worker:
            worker = Worker(name, self.journal, ignore_stop=ignore_stop, start_s=start_s)
            self.latest[name] = worker
            return worker

        return TaskSpec(name, factory, restart=restart, shutdown_s=shutdown_s)


def no_jitter(low: float, high: float) -> float:
    """A jitter source that always draws 0."""
    return 0.0


def max_jitter(low: float, high: float) -> float:
    """A jitter source that always draws the top of its range."""
    return high


async def outcome_of(coro: Awaitable[Any]) -> Any:
    """The value of an awaitable, or the LomashError it raised."""
    try:
        return await coro
    except LomashError as error:
        return error
