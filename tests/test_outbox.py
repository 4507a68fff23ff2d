"""The transactional outbox on the real PostgreSQL, relaying to a recording queue fake."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio
import trio_asyncio

from adapters import (
    Connection,
    Database,
    DatabaseStatistics,
    Operation,
    PostgresDatabase,
    migrate_up,
    open_database,
)
from adapters._outbox import add_to_outbox, record_effect_once
from chaos import Proxy, open_proxy
from config import DatabaseSettings, OutboxSettings
from jobs import OutboxRelay
from jobs._queue import Payload
from supervisors import Conflict, ConnectionLost, Misuse
from tests.conftest import port_of

BOUND_S = 20.0  # no test here may hang past this
STOP_S = 1.0  # a relay asked to stop returns within this (its poll_s is far longer)
CLEANUP_S = 2.0
QUEUE = "notifications"
FAST = OutboxSettings(poll_s=0.01, batch=10, retry_min_s=0.01, retry_max_s=0.05)


@dataclass(frozen=True, slots=True)
class Enqueued:
    relay: str
    job_id: str
    queue: str
    kind: str
    payload: Payload


class Changes:
    """Lets a test wait, without polling, for a condition on a fake's state."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._event.wait()


class RecordingQueues(Changes):
    """A fake job queue store: jobs once per job_id, every enqueue call, up or down."""

    def __init__(self) -> None:
        self.jobs: dict[str, Enqueued] = {}  # first enqueue of each job_id, in order
        self.calls: list[Enqueued] = []  # every accepted enqueue, duplicates included
        self.refused = 0
        self.down = False
        self.held = 0  # enqueues waiting at the gate
        self.gate: trio.Event | None = None  # when set: enqueues wait for it
        super().__init__()

    def client(self, relay: str) -> RecordingQueue:
        return RecordingQueue(self, relay)


class RecordingQueue:
    """Our JobQueue Protocol's ``enqueue`` only: idempotent per job_id, can be down."""

    def __init__(self, store: RecordingQueues, relay: str) -> None:
        self._store = store
        self._relay = relay

    async def enqueue(
        self,
        queue: str,
        kind: str,
        payload: Payload,
        *,
        job_id: str | None = None,
        delay_s: float = 0.0,
    ) -> str:
        store = self._store
        assert job_id is not None, "the relay always passes the outbox row's job_id"
        await trio.lowlevel.checkpoint()
        if store.gate is not None:
            store.held += 1
            store.notify()
            await store.gate.wait()
        if store.down:
            store.refused += 1
            store.notify()
            raise ConnectionLost("connection refused", dependency="redis")
        call = Enqueued(self._relay, job_id, queue, kind, payload)
        store.calls.append(call)
        store.jobs.setdefault(job_id, call)
        store.notify()
        return job_id


class ObservedDatabase(Changes):
    """Our Database Protocol around a real one, counting operations as they end."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self._database = database
        self.completed = 0
        self.lost = 0  # ended in ConnectionLost

    async def run[T](
        self, operation: Operation[T], *, readonly: bool = False, idempotent: bool = False
    ) -> T:
        try:
            result = await self._database.run(operation, readonly=readonly)
        except ConnectionLost:
            self.lost += 1
            self.notify()
            raise
        self.completed += 1
        self.notify()
        return result

    async def ping(self) -> None:
        await self._database.ping()

    def outage(self) -> str | None:
        return self._database.outage()

    def statistics(self) -> DatabaseStatistics:
        return self._database.statistics()


def database_settings(url: str) -> DatabaseSettings:
    return DatabaseSettings(
        url=url, connect_timeout_s=0.5, reconnect_min_s=0.05, reconnect_max_s=0.4, pool_max_size=4
    )


def via(proxy: Proxy, url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.replace(f":{port_of(url)}", f":{proxy.port}")
    return urlunsplit(parts._replace(netloc=netloc))


@asynccontextmanager
async def migrated_database(url: str) -> AsyncIterator[PostgresDatabase]:
    """Every migration applied to ``url``, then a database on it."""
    await migrate_up(url)
    async with open_database(
        database_settings(url), application="tests", cleanup_s=CLEANUP_S
    ) as db:
        yield db


@asynccontextmanager
async def running(*relays: OutboxRelay) -> AsyncIterator[None]:
    """The relays run for the body, then are asked to stop and awaited."""
    async with trio.open_nursery() as nursery:
        for relay in relays:
            await nursery.start(relay.run)
        yield
        for relay in relays:
            relay.request_stop(final=True)


async def add_jobs(db: PostgresDatabase, count: int) -> list[str]:
    """``count`` jobs committed in one transaction; their ids in outbox order."""

    async def add(connection: Connection) -> list[str]:
        async with connection.transaction():
            return [
                await add_to_outbox(connection, queue=QUEUE, kind="remind", payload={"n": n})
                for n in range(count)
            ]

    return await db.run(add)


async def insert_showroom(connection: Connection, showroom_id: str) -> None:
    await connection.execute(
        "INSERT INTO showrooms (id, name, address, city, postcode) VALUES ($1, $2, $3, $4, $5)",
        showroom_id,
        f"Showroom {showroom_id}",
        "1 High Street",
        "Leeds",
        "LS1 1AA",
    )


async def outbox_rows(connection: Connection) -> list[tuple[str, int, str | None]]:
    rows = await connection.fetch("SELECT job_id, attempts, last_error FROM outbox ORDER BY id")
    return [(r["job_id"], r["attempts"], r["last_error"]) for r in rows]


def test_backoff_doubles_up_to_its_cap() -> None:
    """retry_min_s doubles per consecutive failure and stops at retry_max_s."""
    settings = OutboxSettings()
    assert [settings.backoff_s(n) for n in range(1, 8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]


async def test_a_job_committed_with_its_write_is_relayed_once(fresh_database_url: str) -> None:
    """Business write + add_to_outbox in one transaction: each job enqueued once, then deleted."""
    queues = RecordingQueues()

    async def book(connection: Connection) -> tuple[str, str]:
        async with connection.transaction():
            await insert_showroom(connection, "leeds")
            named = await add_to_outbox(
                connection,
                queue=QUEUE,
                kind="confirm",
                payload={"showroom": "leeds", "at": [9, 30]},
                job_id="booking-1:confirm",
            )
            fresh = await add_to_outbox(connection, queue="crm", kind="sync", payload={})
            return named, fresh

    async with trio_asyncio.open_loop(), migrated_database(fresh_database_url) as db:
        with trio.fail_after(BOUND_S):
            named, fresh = await db.run(book)
            async with running(OutboxRelay(db, queues.client("r1"), FAST)):
                await queues.wait_until(lambda: len(queues.calls) == 2)
            left = await db.run(outbox_rows)
    assert named == "booking-1:confirm"
    assert len(fresh) == 32
    assert uuid.UUID(hex=fresh).version == 4  # a new uuid4 for a job without a name
    assert queues.calls == [
        Enqueued("r1", named, QUEUE, "confirm", {"showroom": "leeds", "at": [9, 30]}),
        Enqueued("r1", fresh, "crm", "sync", {}),
    ]
    assert left == []


async def test_a_rolled_back_transaction_relays_nothing(fresh_database_url: str) -> None:
    """A job added in a transaction whose business write failed is never enqueued."""
    queues = RecordingQueues()

    async def book_taken(connection: Connection) -> None:
        async with connection.transaction():
            await add_to_outbox(connection, queue=QUEUE, kind="confirm", payload={}, job_id="lost")
            await insert_showroom(connection, "taken")  # duplicate key: the whole tx rolls back

    async def book_free(connection: Connection) -> None:
        async with connection.transaction():
            await insert_showroom(connection, "free")
            await add_to_outbox(connection, queue=QUEUE, kind="confirm", payload={}, job_id="kept")

    async with trio_asyncio.open_loop(), migrated_database(fresh_database_url) as db:
        with trio.fail_after(BOUND_S):
            await db.run(lambda c: insert_showroom(c, "taken"))
            with pytest.raises(Conflict):
                await db.run(book_taken)
            await db.run(book_free)  # committed after the rollback: relayed when it is
            async with running(OutboxRelay(db, queues.client("r1"), FAST)):
                await queues.wait_until(lambda: "kept" in queues.jobs)
    assert [call.job_id for call in queues.calls] == ["kept"]


async def test_queue_down_loses_nothing_and_keeps_order(fresh_database_url: str) -> None:
    """50 jobs pile up while the queue refuses; after it is back each is enqueued once, in order."""
    queues = RecordingQueues()
    queues.down = True
    async with trio_asyncio.open_loop(), migrated_database(fresh_database_url) as db:
        with trio.fail_after(BOUND_S):
            async with running(OutboxRelay(db, queues.client("r1"), FAST)):
                expected = [job for _ in range(5) for job in await add_jobs(db, 10)]
                await queues.wait_until(lambda: queues.refused >= 3)  # retried after backoff
            while_down = await db.run(outbox_rows)
            queues.down = False
            async with running(OutboxRelay(db, queues.client("r2"), FAST)):
                await queues.wait_until(lambda: len(queues.jobs) == len(expected))
            left = await db.run(outbox_rows)
    assert len(expected) == 50
    # Only the head row was tried: each refusal counted on it, the rest untouched.
    assert [job for job, _, _ in while_down] == expected
    assert while_down[0][1:] == (queues.refused, "ConnectionLost: connection refused")
    assert {(attempts, error) for _, attempts, error in while_down[1:]} == {(0, None)}
    assert [call.job_id for call in queues.calls] == expected  # once each, in id order
    assert left == []


async def test_two_relays_lose_nothing_and_only_re_enqueue_idempotently(
    fresh_database_url: str,
) -> None:
    """Two relays at once: every job reaches the queue; no relay enqueues a job twice.

    Claim locks end with the claim, so both relays may enqueue the same row: what is
    pinned is that the queue holds exactly the 200 jobs, each relay enqueued each
    job_id at most once (so at most twice in all), every repeat carried the same
    queue, kind and payload (a true idempotent re-enqueue), and the outbox is empty.
    """
    queues = RecordingQueues()
    async with trio_asyncio.open_loop(), migrated_database(fresh_database_url) as db:
        with trio.fail_after(BOUND_S):
            expected = await add_jobs(db, 200)
            relays = (OutboxRelay(db, queues.client(name), FAST) for name in ("r1", "r2"))
            async with running(*relays):
                await queues.wait_until(lambda: len(queues.jobs) == len(expected))
            left = await db.run(outbox_rows)
    assert sorted(queues.jobs) == sorted(expected)
    per_relay = Counter((call.relay, call.job_id) for call in queues.calls)
    assert max(per_relay.values()) == 1
    for call in queues.calls:
        first = queues.jobs[call.job_id]
        assert (call.queue, call.kind, call.payload) == (first.queue, first.kind, first.payload)
    assert left == []


async def test_the_relay_waits_out_a_database_outage(fresh_database_url: str) -> None:
    """Postgres unreachable: the relay logs, backs off, and relays once it is back."""
    queues = RecordingQueues()
    async with (
        trio_asyncio.open_loop(),
        migrated_database(fresh_database_url) as db,
        open_proxy(port_of(fresh_database_url)) as proxy,
    ):
        proxy.reset()
        settings = database_settings(via(proxy, fresh_database_url))
        async with open_database(settings, application="tests", cleanup_s=CLEANUP_S) as down:
            with trio.fail_after(BOUND_S):
                expected = await add_jobs(db, 3)
                observed = ObservedDatabase(down)
                relay = OutboxRelay(observed, queues.client("r1"), FAST)
                async with running(relay):
                    await observed.wait_until(lambda: observed.lost >= 2)
                    assert queues.calls == []
                    proxy.forward()
                    await queues.wait_until(lambda: len(queues.jobs) == len(expected))
    assert [call.job_id for call in queues.calls] == expected
    assert relay.statistics().database_failures >= 2


async def test_record_effect_once_is_true_once_and_rolls_back(fresh_database_url: str) -> None:
    """First record -> True, repeat -> False; a rolled-back record is forgotten."""

    class Abandoned(Exception):
        pass

    async def record(connection: Connection, effect: str) -> bool:
        async with connection.transaction():
            return await record_effect_once(connection, "job-1", effect)

    async def record_then_fail(connection: Connection) -> None:
        async with connection.transaction():
            assert await record_effect_once(connection, "job-1", "sms")
            raise Abandoned

    async with trio_asyncio.open_loop(), migrated_database(fresh_database_url) as db:
        with trio.fail_after(BOUND_S):
            first = await db.run(lambda c: record(c, "email"))
            again = await db.run(lambda c: record(c, "email"))
            with pytest.raises(Abandoned):
                await db.run(record_then_fail)
            after_rollback = await db.run(lambda c: record(c, "sms"))
            with pytest.raises(Misuse, match="inside the caller's transaction"):
                await db.run(lambda c: record_effect_once(c, "job-2", "email"))
    assert (first, again, after_rollback) == (True, False, True)


async def test_request_stop_returns_promptly_when_idle(fresh_database_url: str) -> None:
    """An idle relay asked to stop returns at once, not at the end of its poll interval."""
    queues = RecordingQueues()
    relay_settings = OutboxSettings(poll_s=60.0)
    async with trio_asyncio.open_loop(), migrated_database(fresh_database_url) as db:
        with trio.fail_after(BOUND_S):
            await add_jobs(db, 1)
            observed = ObservedDatabase(db)
            relay = OutboxRelay(observed, queues.client("r1"), relay_settings)
            async with trio.open_nursery() as nursery:
                await nursery.start(relay.run)
                # Claim and settle done: the relay now pauses for poll_s.
                await observed.wait_until(lambda: observed.completed == 2)
                relay.request_stop(final=True)
                stop_requested_at = trio.current_time()
            stopped_in = trio.current_time() - stop_requested_at
    assert stopped_in < STOP_S


async def test_request_stop_finishes_the_batch_in_hand(fresh_database_url: str) -> None:
    """Asked to stop mid-batch, the relay enqueues and deletes the whole batch, then returns."""
    queues = RecordingQueues()
    queues.gate = trio.Event()
    async with trio_asyncio.open_loop(), migrated_database(fresh_database_url) as db:
        with trio.fail_after(BOUND_S):
            expected = await add_jobs(db, 3)
            relay = OutboxRelay(db, queues.client("r1"), FAST)
            async with trio.open_nursery() as nursery:
                await nursery.start(relay.run)
                await queues.wait_until(lambda: queues.held == 1)  # first enqueue in flight
                relay.request_stop(final=True)
                queues.gate.set()
            left = await db.run(outbox_rows)
    assert [call.job_id for call in queues.calls] == expected
    assert left == []
