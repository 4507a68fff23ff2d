"""The transactional outbox, the writing side: a job commits (or rolls back) with
the business write.

A handler whose write must cause work elsewhere (a confirmation, a payment capture)
calls ``add_to_outbox`` inside its own database operation and transaction: the job
row exists if and only if the business rows committed; ``jobs.OutboxRelay`` hands
committed rows to the job queue. The other half is ``record_effect_once``: a job
handler records ``(job_id, effect)`` in the transaction that performs the effect, so
a redelivered job (the queue is at-least-once) commits each effect exactly once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters._postgres import Connection, Database
from supervisors import Misuse

__all__ = [
    "OutboxJob",
    "Payload",
    "add_many_to_outbox",
    "add_to_outbox",
    "notification_outcomes",
    "outbox_backlog",
    "record_effect_once",
]

type Payload = Mapping[str, Any]  # a job's payload: JSON-serialisable


@dataclass(frozen=True, slots=True)
class OutboxJob:
    """A job to write with a business change (its id makes the write idempotent)."""

    job_id: str
    queue: str
    kind: str
    payload: Payload


_INSERT = """
INSERT INTO outbox (job_id, queue, kind, payload) VALUES ($1, $2, $3, $4::jsonb)
ON CONFLICT (job_id) DO NOTHING
"""
_RECORD_EFFECT = """
INSERT INTO job_effects (job_id, effect) VALUES ($1, $2)
ON CONFLICT DO NOTHING RETURNING true
"""


async def add_to_outbox(
    connection: Connection,
    *,
    queue: str,
    kind: str,
    payload: Payload,
    job_id: str | None = None,
) -> str:
    """Write a job into the outbox inside the caller's transaction; return its id.

    Runs on the asyncio side, in the caller's database operation. ``job_id`` defaults
    to a new random id; adding an id already in the outbox is a no-op, as enqueueing
    it again would be.
    """
    _require_transaction(connection, "add_to_outbox")
    job_id = uuid.uuid4().hex if job_id is None else job_id
    await connection.execute(_INSERT, job_id, queue, kind, json.dumps(dict(payload)))
    return job_id


_INSERT_MANY = """
INSERT INTO outbox (job_id, queue, kind, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
ON CONFLICT (job_id) DO NOTHING
"""


async def add_many_to_outbox(connection: Connection, jobs: Sequence[OutboxJob]) -> None:
    """``add_to_outbox`` for many jobs in one statement."""
    _require_transaction(connection, "add_many_to_outbox")
    if jobs:
        await connection.execute(
            _INSERT_MANY,
            [j.job_id for j in jobs],
            [j.queue for j in jobs],
            [j.kind for j in jobs],
            [json.dumps(dict(j.payload)) for j in jobs],
        )


async def record_effect_once(connection: Connection, job_id: str, effect: str) -> bool:
    """True the first time ``(job_id, effect)`` is recorded, inside the handler's transaction.

    Perform the effect in the same transaction only when True: it then commits exactly
    once, and a rollback forgets the record with the effect. A concurrent handler of
    the same job waits on the first one's row and gets False if that one commits.
    """
    _require_transaction(connection, "record_effect_once")
    first = await connection.fetchval(_RECORD_EFFECT, job_id, effect)
    return first is True


def _require_transaction(connection: Connection, caller: str) -> None:
    if not connection.is_in_transaction():
        raise Misuse(f"{caller} must run inside the caller's transaction")


_BACKLOGS = """SELECT (SELECT count(*) FROM outbox),
    (SELECT count(*) FROM failed_messages WHERE status = 'PENDING'),
    (SELECT count(*) FROM failed_messages WHERE status = 'FAILED')"""


async def outbox_backlog(database: Database) -> dict[str, int]:
    """What waits in Postgres, in one round trip: outbox rows the relay has not moved
    to a queue yet (``outbox``), emails no provider took that are retried
    (``emails_retrying``) and those given up after their retry window
    (``emails_undelivered``)."""

    async def operation(connection: Connection) -> dict[str, int]:
        row = await connection.fetchrow(_BACKLOGS)
        assert row is not None
        return {"outbox": row[0], "emails_retrying": row[1], "emails_undelivered": row[2]}

    return await database.run(operation, idempotent=True)


_NOTIFICATIONS = """SELECT channel, provider, status, count(*) FROM notification_logs
    WHERE attempted_at > now() - interval '24 hours' GROUP BY channel, provider, status"""


async def notification_outcomes(database: Database) -> dict[tuple[str, str, str], int]:
    """The last 24 hours' notification attempts: (channel, provider, status) -> count."""

    async def operation(connection: Connection) -> dict[tuple[str, str, str], int]:
        rows = await connection.fetch(_NOTIFICATIONS)
        return {(r[0], r[1], r[2]): r[3] for r in rows}

    return await database.run(operation, readonly=True)
