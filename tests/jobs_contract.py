"""The job-queue contract, written once: every ``JobQueue`` implementation must pass it.

``tests/test_jobs_contract.py`` runs these tests against ``MemoryJobQueue`` and
``RedisJobQueue`` by parametrizing the ``backend`` fixture (trio's
``check_half_closeable_stream`` pattern): that is what makes the memory queue a
trustworthy stand-in. A ``Backend`` opens a fresh, empty queue with the policy a test
gives (for Redis: its own loop, connection and key prefix), reads the queue's clock,
and says when lease calls are parked waiting for a job.

No real-time margin decides an outcome here:

- The memory queue runs on trio's autojump clock (``queue_clock`` is pytest-trio's
  ``autojump_clock`` for it), so every duration is checked exactly.
- The Redis queue runs in real time on the real server, so its tests check order and
  state: times the queue recorded (lease expiry, history, death) are compared on the
  queue's own clock (Redis ``TIME``, exact to the microsecond), and the tests wait on
  conditions (the queue's clock reaching a time, a lease call parked on the server)
  under a generous ``fail_after``. Its blocking reads are never cut into polls within
  a test's bound (see ``test_jobs_contract``), and waiting leases are given a
  ``wait_s`` past that bound, so a lease that returns in time was woken by what it
  waits for (an enqueue, a due time, an expired lease), not by a poll or a timeout.
- Leases (``FAST``) outlast a test's bound, so a slow machine never turns a lease
  into a stall; only the tests of expiry use short ones (``EXPIRING``).
- Where the outcome depends on the machine being fast enough (a probe before a delay
  is over, a heartbeat and the probe after it inside one lease, a trim inside a
  retention), the queue's clock says afterwards whether the run could tell; a run
  that could not (``Undecided``) is repeated on a fresh queue, never passed. In
  virtual time every run decides.

Exact schedules under the default policy are pinned in virtual time in
``test_jobs_virtual_time``, and on the real Redis in ``test_jobs_redis_backoff``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Protocol

import pytest
import trio
import trio.testing

from jobs._queue import JobQueue, JobState, Lease, LeaseLost, QueuePolicy
from supervisors import NotFound

BOUND_S = 10.0  # no test here may hang past this
WAIT_S = 2 * BOUND_S  # a waiting lease's wait_s: it must be woken, not run out
TICK_S = 1e-6  # the Redis queue's clock resolution
EXACT = 1e-9  # virtual time: exact but for float rounding
NEAR_S = 0.1  # how far before a retention's end a "still kept" trim is aimed
Q = "mail"
# Small backoffs; leases that never run out within a test's bound (no stall can come
# from a slow machine), except in the tests of expiry, which use EXPIRING.
FAST = QueuePolicy(attempts=3, backoff_base_s=0.05, backoff_jitter=0.0, lease_s=2 * WAIT_S)
EXPIRING = replace(FAST, lease_s=0.3)
PAYLOAD = {"to": "a@example.com", "count": 3, "tags": ["x", "é"], "nested": {"ok": True}}


class Backend(Protocol):
    """One ``JobQueue`` implementation as the contract tests drive it."""

    @property
    def virtual(self) -> bool:
        """True when the queue runs on trio's autojump clock: durations are exact."""
        ...

    def open(self, policy: QueuePolicy) -> AbstractAsyncContextManager[JobQueue]:
        """A fresh, empty queue with ``policy`` for every queue name."""
        ...

    async def now(self, queue: JobQueue) -> float:
        """The queue's clock, in the seconds its records use."""
        ...

    async def parked(self, queue: JobQueue, count: int = 1) -> None:
        """Returns once ``count`` lease calls on ``queue`` are blocked waiting for a job."""
        ...


type QueueTest = Callable[[], Awaitable[None]]


class Undecided(Exception):
    """The machine was too slow for this run to tell (the queue's clock says so)."""


async def until_decided(backend: Backend, scenario: QueueTest) -> int:
    """Runs ``scenario`` until one run decides; returns how many runs it took."""
    for runs in itertools.count(1):
        try:
            await scenario()
        except Undecided:
            assert not backend.virtual, "in virtual time every run decides"
        else:
            return runs
    raise AssertionError("unreachable")


async def until_queue_time(backend: Backend, queue: JobQueue, at: float) -> None:
    """Returns once the queue's clock reads ``at`` or later (a tick later on Redis, so
    float rounding of a sum never lands a microsecond short)."""
    target = at if backend.virtual else at + TICK_S
    while True:
        left = target - await backend.now(queue)
        if left <= 0:
            return
        await trio.sleep(left)


def leased_at(lease: Lease, policy: QueuePolicy) -> float:
    """When the queue handed out (or last renewed) ``lease``, on its own clock."""
    return lease.expires_at - policy.lease_s


async def lease_one(queue: JobQueue, *, worker: str = "w1", wait_s: float = WAIT_S) -> Lease:
    leases = await queue.lease(Q, worker=worker, limit=1, wait_s=wait_s)
    assert len(leases) == 1
    return leases[0]


async def nothing_ready(queue: JobQueue, queue_name: str = Q) -> bool:
    return await queue.lease(queue_name, worker="probe", limit=10, wait_s=0) == []


async def nothing_before(queue: JobQueue, policy: QueuePolicy, due_at: float) -> None:
    """A probe finds nothing to lease, where the job it finds is not due before ``due_at``
    (the queue's clock): a job leased earlier fails the test, one leased later means
    the probe came too late to tell (``Undecided``)."""
    leases = await queue.lease(Q, worker="probe", limit=10, wait_s=0)
    if not leases:
        return
    at = leased_at(leases[0], policy)
    if at >= due_at - TICK_S:
        raise Undecided
    pytest.fail(f"{leases[0].job.id} was leased at {at}, before it was due at {due_at}")


class JobQueueContract:
    """Subclass it in a test module that provides ``backend`` and ``queue_clock``
    fixtures (the clock: pytest-trio's ``autojump_clock`` when ``backend.virtual``,
    else None; a test names it so pytest-trio runs the test on it)."""

    async def test_a_job_round_trips_with_its_kind_and_payload(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """enqueue -> lease -> complete: kind, payload, attempt 1 and the lease expiry intact."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send_email", PAYLOAD)
                assert await queue.state(Q, job_id) is JobState.WAITING
                lease = await lease_one(queue)
                assert (lease.job.id, lease.job.queue, lease.job.kind) == (job_id, Q, "send_email")
                assert lease.job.payload == PAYLOAD
                assert lease.job.attempt == 1
                assert lease.expires_at - lease.job.enqueued_at >= FAST.lease_s - TICK_S
                if backend.virtual:  # enqueued and leased at one instant
                    assert lease.expires_at - lease.job.enqueued_at == pytest.approx(
                        FAST.lease_s, abs=EXACT
                    )
                assert await queue.state(Q, job_id) is JobState.ACTIVE
                await queue.complete(lease)
                assert await queue.state(Q, job_id) is JobState.COMPLETED
                assert await nothing_ready(queue)

    async def test_the_same_job_id_is_enqueued_once(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """A second enqueue of an id (before or after completion) is a no-op returning the id."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):
                assert await queue.enqueue(Q, "send", {"n": 1}, job_id="job-1") == "job-1"
                assert await queue.enqueue(Q, "send", {"n": 2}, job_id="job-1") == "job-1"
                leases = await queue.lease(Q, worker="w1", limit=5, wait_s=0)
                assert [(x.job.id, x.job.payload) for x in leases] == [("job-1", {"n": 1})]
                await queue.complete(leases[0])
                assert await queue.enqueue(Q, "send", {"n": 3}, job_id="job-1") == "job-1"
                assert await queue.state(Q, "job-1") is JobState.COMPLETED
                assert await nothing_ready(queue)

    async def test_a_delayed_job_is_not_leased_before_it_is_due(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """enqueue(delay_s=0.4): delayed until then, and a waiting lease wakes when it is due."""

        async def scenario() -> None:
            async with backend.open(FAST) as queue:
                start = trio.current_time()
                before = await backend.now(queue)
                job_id = await queue.enqueue(Q, "remind", {}, delay_s=0.4)
                assert await queue.state(Q, job_id) is JobState.DELAYED
                await nothing_before(queue, FAST, before + 0.4)
                lease = await lease_one(queue)  # woken by the due time, not by wait_s
                assert lease.job.id == job_id
                assert leased_at(lease, FAST) >= lease.job.enqueued_at + 0.4 - TICK_S
                if backend.virtual:
                    assert trio.current_time() - start == pytest.approx(0.4, abs=EXACT)
                    assert leased_at(lease, FAST) - lease.job.enqueued_at == pytest.approx(
                        0.4, abs=EXACT
                    )

        with trio.fail_after(BOUND_S):
            await until_decided(backend, scenario)

    async def test_limit_caps_a_lease_and_an_empty_queue_waits_out_wait_s(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """At most ``limit`` jobs per lease; with none ready, [] once ``wait_s`` is over."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):
                ids = [await queue.enqueue(Q, "send", {"i": i}) for i in range(3)]
                first = await queue.lease(Q, worker="w1", limit=2, wait_s=0)
                second = await queue.lease(Q, worker="w1", limit=2, wait_s=0)
                assert [x.job.id for x in first + second] == ids
                for lease in first + second:
                    await queue.complete(lease)
                start = trio.current_time()
                assert await queue.lease(Q, worker="w1", limit=2, wait_s=0.3) == []
                waited = trio.current_time() - start
                # wait_s is measured on this (trio's) clock: never returns before it is over.
                assert waited >= 0.3
                if backend.virtual:
                    assert waited == pytest.approx(0.3, abs=EXACT)

    async def test_a_job_enqueued_while_a_worker_waits_is_leased_promptly(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """A lease parked waiting wakes on enqueue, not when its ``wait_s`` is over."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):  # < WAIT_S: only the enqueue can wake the worker
                got: list[Lease] = []

                async def worker() -> None:
                    got.extend(await queue.lease(Q, worker="w1", limit=1, wait_s=WAIT_S))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(worker)
                    await backend.parked(queue)
                    assert got == []
                    enqueued_at = trio.current_time()
                    job_id = await queue.enqueue(Q, "send", {})
                assert [x.job.id for x in got] == [job_id]
                if backend.virtual:  # woken at the instant of the enqueue
                    assert trio.current_time() == pytest.approx(enqueued_at, abs=EXACT)

    async def test_two_workers_never_get_the_same_job(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """Concurrent workers lease disjoint jobs; one job for two parked workers goes to one."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):
                ids = {await queue.enqueue(Q, "send", {"i": i}) for i in range(30)}
                leased: list[str] = []

                async def worker(name: str) -> None:
                    while leases := await queue.lease(Q, worker=name, limit=4, wait_s=0):
                        for lease in leases:
                            leased.append(lease.job.id)
                            await queue.complete(lease)

                async with trio.open_nursery() as nursery:
                    for n in range(5):
                        nursery.start_soon(worker, f"w{n}")
                assert sorted(leased) == sorted(ids)

                got: dict[str, list[str]] = {}
                first_back = trio.Event()

                async def waiter(name: str) -> None:
                    leases = await queue.lease(Q, worker=name, limit=1, wait_s=WAIT_S)
                    got[name] = [lease.job.id for lease in leases]
                    for lease in leases:
                        await queue.complete(lease)
                    first_back.set()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(waiter, "a")
                    nursery.start_soon(waiter, "b")
                    await backend.parked(queue, 2)
                    one = await queue.enqueue(Q, "send", {})
                    await first_back.wait()
                    [winner] = got  # the other is still waiting: it did not get `one`
                    assert got[winner] == [one]
                    # Only a second job ends its wait (with limit=1 it returns the first
                    # job it gets, so getting `two` means it never got `one`).
                    two = await queue.enqueue(Q, "send", {})
                [loser] = set(got) - {winner}
                assert got[loser] == [two]

    async def test_a_failed_job_is_redelivered_after_its_backoff(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """fail -> delayed for backoff_s(1), then delivered again as attempt 2."""
        policy = replace(FAST, backoff_base_s=0.3)

        async def scenario() -> None:
            async with backend.open(policy) as queue:
                job_id = await queue.enqueue(Q, "charge", {"amount": 5})
                first = await lease_one(queue)
                before_failing = await backend.now(queue)
                failed_at = trio.current_time()
                outcome = await queue.fail(first, error_type="Timeout", error_message="slow")
                assert (outcome.dead, outcome.retry_in_s) == (False, 0.3)
                assert await queue.state(Q, job_id) is JobState.DELAYED
                await nothing_before(queue, policy, before_failing + 0.3)
                second = await lease_one(queue)  # woken by the end of the backoff
                assert leased_at(second, policy) >= before_failing + 0.3 - TICK_S
                if backend.virtual:
                    assert trio.current_time() - failed_at == pytest.approx(0.3, abs=EXACT)
                assert (second.job.id, second.job.attempt, second.job.payload) == (
                    job_id,
                    2,
                    {"amount": 5},
                )
                assert second.token != first.token

        with trio.fail_after(BOUND_S):
            await until_decided(backend, scenario)

    async def test_the_last_failure_dead_letters_the_job_with_its_full_history(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """After ``attempts`` failures: dead, each attempt's outcome, error and times kept."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "charge", PAYLOAD)
                outcomes = []
                for attempt in range(1, FAST.attempts + 1):
                    lease = await lease_one(queue)
                    assert lease.job.attempt == attempt
                    outcomes.append(
                        await queue.fail(
                            lease, error_type=f"E{attempt}", error_message=f"no {attempt}"
                        )
                    )
                assert [(o.dead, o.retry_in_s) for o in outcomes] == [
                    (False, 0.05),
                    (False, 0.1),
                    (True, None),
                ]
                assert await queue.state(Q, job_id) is JobState.DEAD
                assert await nothing_ready(queue)
                dead = await queue.dead_job(Q, job_id)
                assert (dead.job.id, dead.job.kind, dead.job.payload) == (job_id, "charge", PAYLOAD)
                assert dead.job.attempt == FAST.attempts
                assert dead.previous == ()
                history = dead.history
                assert [(h.attempt, h.outcome, h.error_type, h.error_message) for h in history] == [
                    (1, "failed", "E1", "no 1"),
                    (2, "failed", "E2", "no 2"),
                    (3, "failed", "E3", "no 3"),
                ]
                assert all(h.started_at <= h.ended_at for h in history)
                for n, (before, after) in enumerate(itertools.pairwise(history), start=1):
                    gap = after.started_at - before.ended_at
                    assert gap >= FAST.backoff_s(n) - TICK_S
                    if backend.virtual:  # redelivered at the instant the backoff ends
                        assert gap == pytest.approx(FAST.backoff_s(n), abs=EXACT)
                assert history[-1].ended_at <= dead.died_at
                assert [d.job.id for d in await queue.dead(Q, limit=10)] == [job_id]

    async def test_an_expired_lease_is_redelivered_as_a_stalled_attempt(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """A lease not renewed for lease_s: redelivered as the next attempt, logged 'stalled'."""
        policy = replace(EXPIRING, attempts=2)
        async with backend.open(policy) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send", {})
                start = trio.current_time()
                crashed = await lease_one(queue, worker="crashed")
                second = await lease_one(queue, worker="w2")  # woken by the expiry
                assert leased_at(second, policy) >= crashed.expires_at - TICK_S
                if backend.virtual:
                    assert trio.current_time() - start == pytest.approx(policy.lease_s, abs=EXACT)
                assert (second.job.id, second.job.attempt) == (job_id, 2)
                assert (await queue.statistics(Q)).stalled_total == 1
                # The last attempt stalls too: dead-lettered instead of redelivered.
                await until_queue_time(backend, queue, second.expires_at)
                assert await nothing_ready(queue)
                assert await queue.state(Q, job_id) is JobState.DEAD
                dead = await queue.dead_job(Q, job_id)
                assert [(h.attempt, h.outcome, h.error_type) for h in dead.history] == [
                    (1, "stalled", "LeaseExpired"),
                    (2, "stalled", "LeaseExpired"),
                ]
                for h in dead.history:
                    assert h.ended_at - h.started_at == pytest.approx(policy.lease_s, abs=TICK_S)
                assert dead.died_at >= second.expires_at - TICK_S
                if backend.virtual:
                    assert dead.died_at == pytest.approx(second.expires_at, abs=EXACT)
                statistics = await queue.statistics(Q)
                assert (statistics.stalled_total, statistics.dead, statistics.active) == (2, 1, 0)

    async def test_a_stale_worker_is_fenced_off_once_the_job_is_leased_again(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """The old token gets LeaseLost on complete, fail, heartbeat and release."""
        async with backend.open(EXPIRING) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send", {})
                stale = await lease_one(queue, worker="slow")
                fresh = await lease_one(queue, worker="w2")  # woken by the expiry
                with pytest.raises(LeaseLost) as lost:
                    await queue.complete(stale)
                assert lost.value.job_id == job_id
                with pytest.raises(LeaseLost):
                    await queue.fail(stale, error_type="E", error_message="late")
                with pytest.raises(LeaseLost):
                    await queue.heartbeat(stale)
                with pytest.raises(LeaseLost):
                    await queue.release(stale)
                await queue.complete(fresh)
                assert await queue.state(Q, job_id) is JobState.COMPLETED
                with pytest.raises(LeaseLost):
                    await queue.complete(fresh)

    async def test_heartbeats_keep_a_lease_alive_past_lease_s(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """Heartbeats every lease_s/3 hold the job for 2 lease_s: no redelivery, no stall."""

        async def scenario() -> None:
            async with backend.open(EXPIRING) as queue:
                job_id = await queue.enqueue(Q, "send", {})
                first = lease = await lease_one(queue)
                for _ in range(6):
                    # lease_s/3 after the last renewal, on the queue's clock.
                    await until_queue_time(
                        backend, queue, leased_at(lease, EXPIRING) + EXPIRING.lease_s / 3
                    )
                    renewed = await queue.heartbeat(lease)
                    if leased_at(renewed, EXPIRING) >= lease.expires_at:
                        raise Undecided  # the heartbeat came after the lease had run out
                    assert renewed.token == lease.token
                    assert renewed.expires_at > lease.expires_at
                    if backend.virtual:
                        assert renewed.expires_at - lease.expires_at == pytest.approx(
                            EXPIRING.lease_s / 3, abs=EXACT
                        )
                    lease = renewed
                    back = await queue.lease(Q, worker="probe", limit=1, wait_s=0)
                    if back:  # redelivered: a stall, right only if the renewal had run out
                        if leased_at(back[0], EXPIRING) >= lease.expires_at:
                            raise Undecided
                        pytest.fail(
                            f"redelivered at {leased_at(back[0], EXPIRING)} while the lease"
                            f" ran to {lease.expires_at}"
                        )
                    if await backend.now(queue) >= lease.expires_at:
                        raise Undecided  # the probe may have come after the renewal ran out
                    assert await queue.state(Q, job_id) is JobState.ACTIVE
                # Held past its first lease_s: the last renewal is 2 lease_s after the lease.
                assert (
                    leased_at(lease, EXPIRING)
                    >= leased_at(first, EXPIRING) + 2 * EXPIRING.lease_s - TICK_S
                )
                await queue.complete(lease)
                statistics = await queue.statistics(Q)
                assert (statistics.completed, statistics.stalled_total) == (1, 0)
                assert await queue.state(Q, job_id) is JobState.COMPLETED

        with trio.fail_after(BOUND_S):
            await until_decided(backend, scenario)

    async def test_release_hands_the_job_back_uncounted_and_fences_the_old_lease(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """release: waiting again at once, same attempt number, old token fenced off."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send", {})
                old = await lease_one(queue)
                await queue.release(old)
                assert await queue.state(Q, job_id) is JobState.WAITING
                statistics = await queue.statistics(Q)
                assert (statistics.waiting, statistics.active) == (1, 0)
                again = await lease_one(queue, worker="w2", wait_s=0)
                assert (again.job.id, again.job.attempt) == (job_id, 1)
                assert again.token != old.token
                for fenced in (queue.complete, queue.heartbeat, queue.release):
                    with pytest.raises(LeaseLost):
                        await fenced(old)
                await queue.complete(again)

    async def test_release_with_a_delay_hands_the_job_back_later_uncounted(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """release(delay_s): delayed until the delay is over, then the same attempt again."""

        async def scenario() -> None:
            async with backend.open(FAST) as queue:
                job_id = await queue.enqueue(Q, "send", {})
                released_from: float | None = None
                for _ in range(3):  # more times than FAST allows attempts
                    lease = await lease_one(queue)  # woken by the end of the delay
                    assert lease.job.attempt == 1
                    if released_from is not None:
                        assert leased_at(lease, FAST) >= released_from + 0.3 - TICK_S
                        if backend.virtual:
                            assert leased_at(lease, FAST) == pytest.approx(
                                released_from + 0.3, abs=EXACT
                            )
                    released_from = await backend.now(queue)
                    await queue.release(lease, delay_s=0.3)
                    assert await queue.state(Q, job_id) is JobState.DELAYED
                    await nothing_before(queue, FAST, released_from + 0.3)
                await queue.complete(await lease_one(queue))
                assert await queue.state(Q, job_id) is JobState.COMPLETED

        with trio.fail_after(BOUND_S):
            await until_decided(backend, scenario)

    async def test_the_dead_letter_queue_lists_inspects_requeues_and_purges(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """dead() newest first, dead_job / requeue_dead NotFound, requeue keeps the old history."""
        async with backend.open(replace(FAST, attempts=1)) as queue:
            with trio.fail_after(BOUND_S):

                async def kill(job_id: str, error_type: str) -> None:
                    await queue.enqueue(Q, "send", {"id": job_id}, job_id=job_id)
                    await queue.fail(
                        await lease_one(queue), error_type=error_type, error_message="x"
                    )

                # "b" dies first, "a" later: newest first is not the ids' order either way.
                await kill("b", "First")
                b_died = (await queue.dead_job(Q, "b")).died_at
                await until_queue_time(backend, queue, b_died + TICK_S)
                await kill("a", "First")
                assert [d.job.id for d in await queue.dead(Q, limit=10)] == ["a", "b"]
                assert [d.job.id for d in await queue.dead(Q, limit=1)] == ["a"]
                with pytest.raises(NotFound):
                    await queue.dead_job(Q, "absent")
                with pytest.raises(NotFound):
                    await queue.requeue_dead(Q, "absent")
                await queue.enqueue(Q, "send", {}, job_id="alive")
                with pytest.raises(NotFound):
                    await queue.dead_job(Q, "alive")

                await queue.requeue_dead(Q, "a")
                assert await queue.state(Q, "a") is JobState.WAITING
                assert [d.job.id for d in await queue.dead(Q, limit=10)] == ["b"]
                leases = await queue.lease(Q, worker="w1", limit=2, wait_s=0)
                assert [(x.job.id, x.job.attempt) for x in leases] == [("alive", 1), ("a", 1)]
                await queue.complete(leases[0])
                await queue.fail(leases[1], error_type="Second", error_message="y")
                again = await queue.dead_job(Q, "a")
                assert [h.error_type for h in again.history] == ["Second"]
                assert [[h.error_type for h in life] for life in again.previous] == [["First"]]

                assert await queue.purge_dead(Q, "b") == 1
                assert await queue.purge_dead(Q, "b") == 0
                assert await queue.purge_dead(Q, "alive") == 0
                assert await queue.state(Q, "b") is None
                await kill("c", "First")
                assert await queue.purge_dead(Q) == 2
                assert await queue.dead(Q, limit=10) == []
                assert await queue.state(Q, "a") is None
                assert await queue.state(Q, "alive") is JobState.COMPLETED

    async def test_trim_forgets_completed_and_dead_jobs_past_retention(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """trim keeps jobs until keep_completed_s / keep_dead_s are over, then forgets them."""
        policy = replace(FAST, attempts=1, keep_completed_s=0.3, keep_dead_s=0.9)

        async def trim_before(queue: JobQueue, end: float) -> int:
            """A trim that began and ended before ``end`` on the queue's clock."""
            trimmed = await queue.trim(Q)
            if await backend.now(queue) >= end - TICK_S:
                raise Undecided  # the trim may have run past the end of a retention
            return trimmed

        async def scenario() -> None:
            async with backend.open(policy) as queue:
                before_done = await backend.now(queue)  # <= "done"'s completion time
                await queue.enqueue(Q, "send", {}, job_id="done")
                await queue.complete(await lease_one(queue))
                after_done = await backend.now(queue)  # >= it
                await queue.enqueue(Q, "send", {}, job_id="dead")
                await queue.fail(await lease_one(queue), error_type="E", error_message="x")
                died_at = (await queue.dead_job(Q, "dead")).died_at
                kept_until = before_done + policy.keep_completed_s  # at the earliest
                dead_until = died_at + policy.keep_dead_s
                assert await trim_before(queue, kept_until) == 0
                await until_queue_time(backend, queue, kept_until - NEAR_S)
                assert await trim_before(queue, kept_until) == 0
                assert await queue.state(Q, "done") is JobState.COMPLETED
                await until_queue_time(backend, queue, after_done + policy.keep_completed_s)
                assert await trim_before(queue, dead_until) == 1
                assert await queue.state(Q, "done") is None
                assert await queue.state(Q, "dead") is JobState.DEAD
                await until_queue_time(backend, queue, dead_until - NEAR_S)
                assert await trim_before(queue, dead_until) == 0
                assert await queue.state(Q, "dead") is JobState.DEAD
                await until_queue_time(backend, queue, dead_until)
                assert await queue.trim(Q) == 1
                assert await queue.state(Q, "dead") is None
                statistics = await queue.statistics(Q)
                assert (statistics.completed, statistics.dead) == (0, 0)
                # A forgotten id is new again.
                await queue.enqueue(Q, "send", {}, job_id="done")
                assert await queue.state(Q, "done") is JobState.WAITING

        with trio.fail_after(BOUND_S):
            await until_decided(backend, scenario)

    async def test_statistics_count_jobs_in_each_state(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """waiting, delayed, active (leased), completed, dead per queue."""
        async with backend.open(replace(FAST, attempts=1)) as queue:
            with trio.fail_after(BOUND_S):
                empty = await queue.statistics("other")
                assert (empty.queue, empty.waiting, empty.active, empty.dead) == ("other", 0, 0, 0)
                for i in range(4):
                    await queue.enqueue(Q, "send", {"i": i})
                await queue.enqueue(Q, "send", {}, delay_s=60.0)
                done, failed = await queue.lease(Q, worker="w1", limit=2, wait_s=0)
                await queue.complete(done)
                await queue.fail(failed, error_type="E", error_message="x")
                await lease_one(queue)
                statistics = await queue.statistics(Q)
                assert statistics.queue == Q
                assert (statistics.waiting, statistics.delayed, statistics.active) == (1, 1, 1)
                assert (statistics.completed, statistics.dead, statistics.stalled_total) == (
                    1,
                    1,
                    0,
                )
                assert (await queue.statistics("other")).waiting == 0

    async def test_statistics_say_how_long_the_next_job_has_waited(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """None while nothing waits; then the age of the oldest deliverable job, which
        goes to the next one once it is leased."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):
                assert (await queue.statistics(Q)).oldest_waiting_age_s is None
                await queue.enqueue(Q, "send", {"n": 1})
                await trio.sleep(0.3)
                await queue.enqueue(Q, "send", {"n": 2})
                first = (await queue.statistics(Q)).oldest_waiting_age_s
                await lease_one(queue)
                second = (await queue.statistics(Q)).oldest_waiting_age_s
                await lease_one(queue)
                drained = (await queue.statistics(Q)).oldest_waiting_age_s
        assert first is not None
        assert second is not None
        assert 0.3 <= first < BOUND_S  # exact 0.3 on the virtual clock
        assert second < first
        assert drained is None

    async def test_state_is_none_for_unknown_jobs_and_queues_are_separate(
        self, backend: Backend, queue_clock: trio.testing.MockClock | None
    ) -> None:
        """state() is None for ids never enqueued (here); another queue sees none of its jobs."""
        async with backend.open(FAST) as queue:
            with trio.fail_after(BOUND_S):
                assert await queue.state(Q, "never") is None
                job_id = await queue.enqueue("other", "send", {})
                assert await queue.state(Q, job_id) is None
                assert await nothing_ready(queue, Q)
                assert await queue.state("other", job_id) is JobState.WAITING
                with pytest.raises(ValueError, match="limit"):
                    await queue.lease(Q, worker="w1", limit=0, wait_s=0)
