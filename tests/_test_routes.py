"""Routes and a job kind for the tests, installed as a tree ``Extension`` (the service
ships none: ``python -m tests._launcher`` runs the service with these).

- ``GET /_test/sleep?seconds=S``: a slow request (logs ``test_sleep_started`` on entry,
  so a test knows it is in flight before it sends SIGTERM).
- ``POST /_test/echo``: decodes a typed JSON body and echoes it (the 400/422 paths).
- ``GET /_test/crash``: raises an unexpected error (the 500 path: no traceback leaks).
- ``POST /_test/grow?mb=N``: this process keeps N MiB more (a leak, for the worker
  memory limit).

Also a job kind, ``test.effect``, handled by the ``EffectRecorder`` actor, for the job
worker's process tests (SIGKILL mid-job, SIGTERM during a job).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import msgspec
import structlog
import trio
from quart import Response, request
from quart_trio import QuartTrio

from adapters import Connection, Database, record_effect_once
from config import RuntimeSettings
from gateway._json import json_response, read_json
from jobs import RunJob
from service import Extension
from supervisors import ActorSpec, DependencyError, InvalidRequest

__all__ = [
    "TEST_EXTENSION",
    "TEST_JOB_KIND",
    "EffectRecorder",
    "effect_recorder_spec",
    "register_test_routes",
]

log = structlog.get_logger("gateway.test_routes")


class Contact(msgspec.Struct, forbid_unknown_fields=True):
    email: str


class Echo(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    count: int
    contact: Contact


_LEAK: list[bytes] = []


def register_test_routes(app: QuartTrio) -> None:
    @app.get("/_test/sleep")
    async def sleep() -> Response:
        try:
            seconds = float(request.args.get("seconds", "1"))
        except ValueError:
            raise InvalidRequest(
                "seconds must be a number", code="invalid_field", field="seconds"
            ) from None
        log.info("test_sleep_started", seconds=seconds)
        await trio.sleep(seconds)
        return json_response({"slept": seconds})

    @app.post("/_test/echo")
    async def echo() -> Response:
        return json_response(await read_json(Echo))

    @app.post("/_test/grow")
    async def grow() -> Response:
        mb = int(request.args.get("mb", "1"))
        _LEAK.append(b"\x01" * (mb * 1024 * 1024))  # written: resident, not just mapped
        return json_response({"kept_mb": mb})

    @app.get("/_test/crash")
    async def crash() -> Response:
        raise RuntimeError("a bug with a secret in it: hunter2")


# -- a job kind for the process-level job tests ---------------------------------------

TEST_JOB_KIND = "test.effect"


async def _record(connection: Connection, job_id: str) -> bool:
    async with connection.transaction():
        return await record_effect_once(connection, job_id, TEST_JOB_KIND)


class EffectRecorder:
    """Records the job's effect once (Postgres), then sleeps as the payload says.

    Payload: ``sleep_s`` (every time), ``first_time_sleep_s`` (only when the effect was
    recorded by this run, so a test can kill the worker after the effect and before
    completion, and the redelivery finishes at once), ``fail``.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    async def handle(self, message: RunJob) -> bool:
        job = message.job
        first = await self._database.run(lambda c: _record(c, job.id))
        log.info("test_job_effect", job_id=job.id, attempt=job.attempt, first=first)
        seconds = float(job.payload.get("sleep_s", 0.0))
        if first:
            seconds += float(job.payload.get("first_time_sleep_s", 0.0))
        await trio.sleep(seconds)
        if job.payload.get("fail"):
            raise DependencyError("failing on purpose", dependency="test")
        return first


def effect_recorder_spec(
    database: Callable[[], Database], runtime: RuntimeSettings
) -> ActorSpec[RunJob, bool]:
    return ActorSpec(
        "test-effects",
        lambda: EffectRecorder(database()),
        mailbox=dataclasses.replace(runtime.mailbox, concurrency=8, message_timeout_s=None),
    )


TEST_EXTENSION = Extension(
    routes=register_test_routes,
    actors=lambda database, settings: [
        (TEST_JOB_KIND, effect_recorder_spec(lambda: database.value, settings.runtime))
    ],
)
