"""The outbox relay: committed outbox rows (``adapters.add_to_outbox``) to the job queue.

While Postgres is down there is no outbox to write to: work that must still be
accepted (bookings and payments, per the spec) is queued straight to Redis with
``JobQueue.enqueue(queue, kind, payload, job_id=...)``. Nothing here is needed for that.

Hops and transactions: claim, enqueue, settle
    1. *claim*, one operation: ``SELECT ... ORDER BY id LIMIT batch FOR UPDATE SKIP
       LOCKED``, a one-statement transaction;
    2. *enqueue* the rows on the trio side, no transaction open, each with the row's
       ``job_id``, in id order, stopping at the first failure so that the order holds
       across a queue outage;
    3. *settle*, one operation and transaction: delete the enqueued rows; the row that
       failed gets ``attempts + 1`` and ``last_error`` and stays, as do the rest.

    Holding the claim's transaction open across the enqueues was rejected: the
    operation (asyncio side) would have to call back into trio per enqueue, breaking
    the one-hop-per-operation rule of ``Database``; it would hold a pooled connection
    and row locks for as long as Redis takes to answer or time out; and a queue
    ``ConnectionLost`` raised inside the operation would be charged to the Postgres
    reconnect gate. Instead the relay relies on the queue's promise that ``enqueue``
    is idempotent per ``job_id``:

    - a crash (or a lost database) between enqueue and settle leaves the rows, which
      are enqueued again later: a no-op at the queue;
    - two relays (two processes) may claim and enqueue the same rows, since a claim's
      locks last only as long as the claim; the second enqueue of a ``job_id`` is a
      no-op and deleting a deleted row deletes nothing. ``SKIP LOCKED`` still keeps a
      claim from reading rows another relay is deleting at that moment (fewer
      duplicates, never a wait). Each relay enqueues a row at most once unless its
      settle failed; the queue holds every job once; no row is lost.

    That idempotency lasts as long as the queue remembers the job (``keep_completed_s``
    after completion, 24 h): a row re-enqueued later than that (a relay unable to
    settle for a day) runs again, which ``record_effect_once`` in handlers absorbs.

Failures
    The queue refuses (any ``LomashError``, e.g. ``ConnectionLost``): the row stays
    with its attempt counted, and the relay backs off (``retry_min_s`` doubling up to
    ``retry_max_s``) before it tries again. Postgres down (``ConnectionLost``,
    ``OperationTimeout``, ``Contention``): logged, the same backoff. Any other error
    (``DatabaseError`` is a bug until shown otherwise) crashes the relay to its
    supervisor. The relay has nothing to clean up: a row is the truth until deleted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
import trio

from adapters import Connection, Database, Operation, Payload
from config import OutboxSettings
from supervisors import ConnectionLost, Contention, LomashError, OperationTimeout

__all__ = ["OUTBOX_DEFAULTS", "JobEnqueuer", "OutboxRelay", "OutboxStatistics"]

log = structlog.get_logger("jobs.outbox")

# Postgres errors the relay waits out; anything else crashes it to its supervisor.
_DATABASE_TRANSIENT = (ConnectionLost, OperationTimeout, Contention)

_CLAIM = """
SELECT id, job_id, queue, kind, payload::text AS payload FROM outbox
ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_DELETE = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
_COUNT_FAILURE = "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1"


OUTBOX_DEFAULTS = OutboxSettings()


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    relayed: int  # rows enqueued and deleted by this relay
    refused: int  # enqueues the queue refused
    database_failures: int  # claims or settles lost to a database outage


class JobEnqueuer(Protocol):
    """The part of ``JobQueue`` the relay uses; every ``JobQueue`` is one."""

    async def enqueue(
        self,
        queue: str,
        kind: str,
        payload: Payload,
        *,
        job_id: str | None = None,
        delay_s: float = 0.0,
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    job_id: str
    queue: str
    kind: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class _Refusal:
    row: _Row
    error: LomashError


class OutboxRelay:
    """Moves committed outbox rows to the job queue, in id order (a supervised service)."""

    def __init__(
        self, database: Database, queue: JobEnqueuer, settings: OutboxSettings = OUTBOX_DEFAULTS
    ) -> None:
        self._database = database
        self._queue = queue
        self._settings = settings
        self._stop = trio.Event()
        self._relayed = 0
        self._refused = 0
        self._database_failures = 0

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay until ``request_stop``; the batch in hand is finished first."""
        log.info("outbox_relay_started", batch=self._settings.batch)
        task_status.started(self)
        failures = 0  # consecutive, of either kind
        while not self._stop.is_set():
            try:
                full, refusal = await self._relay_batch()
            except _DATABASE_TRANSIENT as error:
                failures += 1
                self._database_failures += 1
                log.warning(
                    "outbox_database_unavailable",
                    error_type=type(error).__name__,
                    error=error.message,
                    retry_in_s=self._settings.backoff_s(failures),
                )
            else:
                if refusal is None:
                    failures = 0
                    if full:
                        continue  # more may be waiting: no pause
                else:
                    failures += 1
                    self._refused += 1
                    log.warning(
                        "outbox_enqueue_refused",
                        job_id=refusal.row.job_id,
                        queue=refusal.row.queue,
                        error_type=type(refusal.error).__name__,
                        error=refusal.error.message,
                        retry_in_s=self._settings.backoff_s(failures),
                    )
            pause = self._settings.backoff_s(failures) if failures else self._settings.poll_s
            with trio.move_on_after(pause):
                await self._stop.wait()
        log.info("outbox_relay_stopped", relayed=self._relayed)

    def request_stop(self, *, final: bool) -> None:
        """Finish the batch in hand, then return (the outbox keeps nothing in memory)."""
        self._stop.set()

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(
            relayed=self._relayed, refused=self._refused, database_failures=self._database_failures
        )

    async def _relay_batch(self) -> tuple[bool, _Refusal | None]:
        """Claim, enqueue, settle one batch: (the batch was full, the queue's refusal)."""
        batch = self._settings.batch

        async def claim(connection: Connection) -> list[_Row]:
            records = await connection.fetch(_CLAIM, batch)
            return [
                _Row(r["id"], r["job_id"], r["queue"], r["kind"], json.loads(r["payload"]))
                for r in records
            ]

        rows = await self._database.run(claim)
        enqueued: list[_Row] = []
        refusal: _Refusal | None = None
        for row in rows:
            try:
                await self._queue.enqueue(row.queue, row.kind, row.payload, job_id=row.job_id)
            except LomashError as error:
                refusal = _Refusal(row, error)
                break  # the rest wait behind it: id order holds across an outage
            enqueued.append(row)
        if enqueued or refusal is not None:
            await self._database.run(_settler(enqueued, refusal))
        if enqueued:
            self._relayed += len(enqueued)
            log.info("outbox_relayed", jobs=len(enqueued), last_id=enqueued[-1].id)
        return len(rows) == batch, refusal


def _settler(enqueued: Sequence[_Row], refusal: _Refusal | None) -> Operation[None]:
    """The settle operation: delete what was enqueued, count the refusal; one transaction."""

    async def settle(connection: Connection) -> None:
        async with connection.transaction():
            if enqueued:
                await connection.execute(_DELETE, [row.id for row in enqueued])
            if refusal is not None:
                error = f"{type(refusal.error).__name__}: {refusal.error.message}"
                await connection.execute(_COUNT_FAILURE, refusal.row.id, error)

    return settle
