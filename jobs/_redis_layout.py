"""How the Redis job queue keeps its state: the keys of a queue and of a job, the Lua
scripts (jobs/lua/, each run with prelude.lua in front), and the records read back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files

import msgspec
from redis.commands.core import AsyncScript

from jobs._queue import (
    AttemptRecord,
    DeadJob,
    Job,
)

_US = 1_000_000  # microseconds per second: the unit of every time stored in Redis


@dataclass(frozen=True, slots=True)
class _Scripts:
    enqueue: AsyncScript
    lease: AsyncScript
    heartbeat: AsyncScript
    complete: AsyncScript
    fail: AsyncScript
    release: AsyncScript
    requeue: AsyncScript
    purge: AsyncScript
    trim: AsyncScript
    statistics: AsyncScript
    dead: AsyncScript


def _lua(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text(encoding="utf-8")


# The scripts live in jobs/lua/, one per operation (each file says its ARGV);
# every one runs with prelude.lua in front of it.
_LUA = files("jobs") / "lua"


_PRELUDE = _lua("prelude")


_SOURCES = {
    name: _lua(name)
    for name in (
        "enqueue",
        "lease",
        "heartbeat",
        "complete",
        "fail",
        "release",
        "requeue",
        "purge",
        "trim",
        "statistics",
        "dead",
    )
}


@dataclass(frozen=True, slots=True)
class _Keys:
    queue: str
    sets: tuple[str, ...]  # stream, delayed, leases, completed, dead, stalled
    job_prefix: str

    def job(self, job_id: str) -> list[str]:
        """KEYS for a script on one job: the queue's keys, then the job's hash."""
        return [*self.sets, self.job_prefix + job_id]


class _Attempt(msgspec.Struct):
    attempt: str
    started_at: str
    ended_at: str
    outcome: str
    error_type: str
    error_message: str


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _seconds(us: object) -> float:
    return int(_text(us)) / _US


def _pairs(flat: Sequence[object]) -> dict[str, str]:
    """A hash from the flat [field, value, ...] list a script returns."""
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _history(raw: str) -> tuple[AttemptRecord, ...]:
    return tuple(
        AttemptRecord(
            int(a.attempt),
            _seconds(a.started_at),
            _seconds(a.ended_at),
            a.outcome,
            a.error_type,
            a.error_message,
        )
        for a in msgspec.json.decode(raw, type=list[_Attempt])
    )


def _dead_job(queue: str, job_id: str, fields: Mapping[str, str]) -> DeadJob:
    previous = msgspec.json.decode(fields.get("previous", "[]"), type=list[msgspec.Raw])
    return DeadJob(
        Job(
            id=job_id,
            queue=queue,
            kind=fields["kind"],
            payload=msgspec.json.decode(fields["payload"]),
            attempt=int(fields["attempt"]),
            enqueued_at=_seconds(fields["enqueued_at"]),
        ),
        history=_history(fields.get("history", "[]")),
        died_at=_seconds(fields["ended_at"]),
        previous=tuple(_history(bytes(p).decode()) for p in previous),
    )
