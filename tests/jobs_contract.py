"""The job-queue contract, written once: every ``JobQueue`` implementation must pass it.

``tests/test_jobs_contract.py`` runs these tests against ``MemoryJobQueue`` and
``RedisJobQueue`` by parametrizing the ``queue_factory`` fixture (trio's
``check_half_closeable_stream`` pattern): that is what makes the memory queue a
trustworthy stand-in. A factory takes the policy every queue gets and opens a fresh,
empty queue (for Redis: its own loop, connection and key prefix).

The tests run in real time with small policies (leases of 0.3 s, backoffs of tens of
milliseconds), so none takes more than about a second. Durations measured on the
test's clock get ``SLACK_S`` of leeway: Redis's clock runs beside trio's. Durations
recorded by the queue itself (history, lease expiry) are checked exactly. Exact
schedules under the default policy are pinned in virtual time in
``test_jobs_virtual_time``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

import pytest
import trio

from jobs._queue import JobQueue, JobState, Lease, LeaseLost, QueuePolicy
from supervisors import NotFound

type QueueFactory = Callable[[QueuePolicy], AbstractAsyncContextManager[JobQueue]]

BOUND_S = 10.0  # no test here may hang past this
SLACK_S = 0.1  # between the queue's clock and the test's
PROMPT_S = 0.5  # "at once", for a queue across a socket
WAKE_S = 0.1  # a parked lease wakes on enqueue well within this (not by polling)
TICK_S = 1e-6  # the Redis queue's clock resolution
Q = "mail"
FAST = QueuePolicy(attempts=3, backoff_base_s=0.05, backoff_jitter=0.0, lease_s=0.3)
PAYLOAD = {"to": "a@example.com", "count": 3, "tags": ["x", "é"], "nested": {"ok": True}}


async def lease_one(queue: JobQueue, *, worker: str = "w1", wait_s: float = 3.0) -> Lease:
    leases = await queue.lease(Q, worker=worker, limit=1, wait_s=wait_s)
    assert len(leases) == 1
    return leases[0]


async def nothing_ready(queue: JobQueue, queue_name: str = Q) -> bool:
    return await queue.lease(queue_name, worker="probe", limit=10, wait_s=0) == []


class JobQueueContract:
    """Subclass it in a test module that provides a ``queue_factory`` fixture."""

    async def test_a_job_round_trips_with_its_kind_and_payload(
        self, queue_factory: QueueFactory
    ) -> None:
        """enqueue -> lease -> complete: kind, payload, attempt 1 and the lease expiry intact."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send_email", PAYLOAD)
                assert await queue.state(Q, job_id) is JobState.WAITING
                lease = await lease_one(queue)
                assert (lease.job.id, lease.job.queue, lease.job.kind) == (job_id, Q, "send_email")
                assert lease.job.payload == PAYLOAD
                assert lease.job.attempt == 1
                assert lease.expires_at - lease.job.enqueued_at >= FAST.lease_s - TICK_S
                assert await queue.state(Q, job_id) is JobState.ACTIVE
                await queue.complete(lease)
                assert await queue.state(Q, job_id) is JobState.COMPLETED
                assert await nothing_ready(queue)

    async def test_the_same_job_id_is_enqueued_once(self, queue_factory: QueueFactory) -> None:
        """A second enqueue of an id (before or after completion) is a no-op returning the id."""
        async with queue_factory(FAST) as queue:
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
        self, queue_factory: QueueFactory
    ) -> None:
        """enqueue(delay_s=0.4): delayed until then, leased promptly once due."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                start = trio.current_time()
                job_id = await queue.enqueue(Q, "remind", {}, delay_s=0.4)
                assert await queue.state(Q, job_id) is JobState.DELAYED
                assert await nothing_ready(queue)
                lease = await lease_one(queue, wait_s=3.0)
                waited = trio.current_time() - start
                assert lease.job.id == job_id
                assert 0.4 - SLACK_S <= waited <= 0.4 + PROMPT_S

    async def test_limit_caps_a_lease_and_an_empty_queue_waits_out_wait_s(
        self, queue_factory: QueueFactory
    ) -> None:
        """At most ``limit`` jobs per lease; with none ready, [] after about ``wait_s``."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                ids = [await queue.enqueue(Q, "send", {"i": i}) for i in range(3)]
                first = await queue.lease(Q, worker="w1", limit=2, wait_s=0)
                second = await queue.lease(Q, worker="w1", limit=2, wait_s=0)
                assert [x.job.id for x in first + second] == ids
                for lease in first + second:
                    await queue.complete(lease)
                start = trio.current_time()
                assert await queue.lease(Q, worker="w1", limit=2, wait_s=0.3) == []
                assert 0.3 <= trio.current_time() - start <= 0.3 + PROMPT_S

    async def test_a_job_enqueued_while_a_worker_waits_is_leased_promptly(
        self, queue_factory: QueueFactory
    ) -> None:
        """A waiting lease wakes on enqueue, long before its ``wait_s`` is over."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                got: list[Lease] = []

                async def worker() -> None:
                    got.extend(await queue.lease(Q, worker="w1", limit=1, wait_s=5.0))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(worker)
                    await trio.sleep(0.3)  # parked by now (and mid-way between any 0.25 s polls)
                    assert got == []
                    enqueued_at = trio.current_time()
                    job_id = await queue.enqueue(Q, "send", {})
                assert trio.current_time() - enqueued_at <= WAKE_S
                assert [x.job.id for x in got] == [job_id]

    async def test_two_workers_never_get_the_same_job(self, queue_factory: QueueFactory) -> None:
        """Concurrent workers lease disjoint jobs that together are all of them."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                ids = {await queue.enqueue(Q, "send", {"i": i}) for i in range(30)}
                leased: list[str] = []

                async def worker(name: str) -> None:
                    while leases := await queue.lease(Q, worker=name, limit=4, wait_s=0.1):
                        for lease in leases:
                            leased.append(lease.job.id)
                            await queue.complete(lease)

                async with trio.open_nursery() as nursery:
                    for n in range(5):
                        nursery.start_soon(worker, f"w{n}")
                assert sorted(leased) == sorted(ids)

                got: list[list[Lease]] = []

                async def waiter(name: str) -> None:
                    leases = await queue.lease(Q, worker=name, limit=1, wait_s=0.5)
                    got.append(leases)
                    for lease in leases:
                        await queue.complete(lease)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(waiter, "a")
                    nursery.start_soon(waiter, "b")
                    await trio.sleep(0.1)
                    await queue.enqueue(Q, "send", {})
                assert sorted(len(x) for x in got) == [0, 1]

    async def test_a_failed_job_is_redelivered_after_its_backoff(
        self, queue_factory: QueueFactory
    ) -> None:
        """fail -> delayed for backoff_s(1), then delivered again as attempt 2."""
        policy = replace(FAST, backoff_base_s=0.3)
        async with queue_factory(policy) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "charge", {"amount": 5})
                first = await lease_one(queue)
                outcome = await queue.fail(first, error_type="Timeout", error_message="slow")
                failed_at = trio.current_time()
                assert (outcome.dead, outcome.retry_in_s) == (False, 0.3)
                assert await queue.state(Q, job_id) is JobState.DELAYED
                assert await nothing_ready(queue)
                second = await lease_one(queue)
                assert trio.current_time() - failed_at >= 0.3 - SLACK_S
                assert (second.job.id, second.job.attempt, second.job.payload) == (
                    job_id,
                    2,
                    {"amount": 5},
                )
                assert second.token != first.token

    async def test_the_last_failure_dead_letters_the_job_with_its_full_history(
        self, queue_factory: QueueFactory
    ) -> None:
        """After ``attempts`` failures: dead, each attempt's outcome, error and times kept."""
        async with queue_factory(FAST) as queue:
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
                for n, (before, after) in enumerate(itertools.pairwise(history)):
                    assert after.started_at - before.ended_at >= FAST.backoff_s(n + 1) - TICK_S
                assert history[-1].ended_at <= dead.died_at
                assert [d.job.id for d in await queue.dead(Q, limit=10)] == [job_id]

    async def test_an_expired_lease_is_redelivered_as_a_stalled_attempt(
        self, queue_factory: QueueFactory
    ) -> None:
        """A lease not renewed for lease_s: redelivered as the next attempt, logged 'stalled'."""
        policy = replace(FAST, attempts=2)
        async with queue_factory(policy) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send", {})
                start = trio.current_time()
                await lease_one(queue, worker="crashed")
                second = await lease_one(queue, worker="w2")
                assert trio.current_time() - start >= policy.lease_s - SLACK_S
                assert (second.job.id, second.job.attempt) == (job_id, 2)
                assert (await queue.statistics(Q)).stalled_total == 1
                # The last attempt stalls too: dead-lettered instead of redelivered.
                assert await queue.lease(Q, worker="w3", limit=1, wait_s=2 * policy.lease_s) == []
                assert await queue.state(Q, job_id) is JobState.DEAD
                history = (await queue.dead_job(Q, job_id)).history
                assert [(h.attempt, h.outcome, h.error_type) for h in history] == [
                    (1, "stalled", "LeaseExpired"),
                    (2, "stalled", "LeaseExpired"),
                ]
                for h in history:
                    assert h.ended_at - h.started_at == pytest.approx(policy.lease_s, abs=TICK_S)
                statistics = await queue.statistics(Q)
                assert (statistics.stalled_total, statistics.dead, statistics.active) == (2, 1, 0)

    async def test_a_stale_worker_is_fenced_off_once_the_job_is_leased_again(
        self, queue_factory: QueueFactory
    ) -> None:
        """The old token gets LeaseLost on complete, fail, heartbeat and release."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send", {})
                stale = await lease_one(queue, worker="slow")
                fresh = await lease_one(queue, worker="w2")
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
        self, queue_factory: QueueFactory
    ) -> None:
        """Heartbeats every lease_s/3 hold the job for 2 lease_s: no redelivery, no stall."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send", {})
                lease = await lease_one(queue)
                for _ in range(6):
                    await trio.sleep(FAST.lease_s / 3)
                    renewed = await queue.heartbeat(lease)
                    assert renewed.token == lease.token
                    assert renewed.expires_at > lease.expires_at
                    lease = renewed
                    assert await nothing_ready(queue)
                await queue.complete(lease)
                statistics = await queue.statistics(Q)
                assert (statistics.completed, statistics.stalled_total) == (1, 0)
                assert await queue.state(Q, job_id) is JobState.COMPLETED

    async def test_release_hands_the_job_back_uncounted_and_fences_the_old_lease(
        self, queue_factory: QueueFactory
    ) -> None:
        """release: waiting again at once, same attempt number, old token fenced off."""
        async with queue_factory(FAST) as queue:
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
        self, queue_factory: QueueFactory
    ) -> None:
        """release(delay_s): delayed, not deliverable before the delay, then the same
        attempt number (a dependency outage does not use up attempts)."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                job_id = await queue.enqueue(Q, "send", {})
                for _ in range(3):  # more times than FAST allows attempts
                    lease = await lease_one(queue, wait_s=2.0)
                    assert lease.job.attempt == 1
                    await queue.release(lease, delay_s=0.3)
                    assert await queue.state(Q, job_id) is JobState.DELAYED
                    assert await nothing_ready(queue)
                await queue.complete(await lease_one(queue, wait_s=2.0))
                assert await queue.state(Q, job_id) is JobState.COMPLETED

    async def test_the_dead_letter_queue_lists_inspects_requeues_and_purges(
        self, queue_factory: QueueFactory
    ) -> None:
        """dead() newest first, dead_job / requeue_dead NotFound, requeue keeps the old history."""
        async with queue_factory(replace(FAST, attempts=1)) as queue:
            with trio.fail_after(BOUND_S):

                async def kill(job_id: str, error_type: str) -> None:
                    await queue.enqueue(Q, "send", {"id": job_id}, job_id=job_id)
                    await queue.fail(
                        await lease_one(queue), error_type=error_type, error_message="x"
                    )

                await kill("a", "First")
                await kill("b", "First")
                assert [d.job.id for d in await queue.dead(Q, limit=10)] == ["b", "a"]
                assert [d.job.id for d in await queue.dead(Q, limit=1)] == ["b"]
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
        self, queue_factory: QueueFactory
    ) -> None:
        """trim drops completed jobs after keep_completed_s and dead ones after keep_dead_s."""
        async with queue_factory(
            replace(FAST, attempts=1, keep_completed_s=0.3, keep_dead_s=0.9)
        ) as queue:
            with trio.fail_after(BOUND_S):
                start = trio.current_time()
                await queue.enqueue(Q, "send", {}, job_id="done")
                await queue.complete(await lease_one(queue))
                await queue.enqueue(Q, "send", {}, job_id="dead")
                await queue.fail(await lease_one(queue), error_type="E", error_message="x")
                assert await queue.trim(Q) == 0
                await trio.sleep_until(start + 0.3 + 0.3)
                assert await queue.trim(Q) == 1
                assert await queue.state(Q, "done") is None
                assert await queue.state(Q, "dead") is JobState.DEAD
                await trio.sleep_until(start + 0.9 + 0.3)
                assert await queue.trim(Q) == 1
                assert await queue.state(Q, "dead") is None
                statistics = await queue.statistics(Q)
                assert (statistics.completed, statistics.dead) == (0, 0)
                # A forgotten id is new again.
                await queue.enqueue(Q, "send", {}, job_id="done")
                assert await queue.state(Q, "done") is JobState.WAITING

    async def test_statistics_count_jobs_in_each_state(self, queue_factory: QueueFactory) -> None:
        """waiting, delayed, active (leased), completed, dead per queue."""
        async with queue_factory(replace(FAST, attempts=1)) as queue:
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

    async def test_state_is_none_for_unknown_jobs_and_queues_are_separate(
        self, queue_factory: QueueFactory
    ) -> None:
        """state() is None for ids never enqueued (here); another queue sees none of its jobs."""
        async with queue_factory(FAST) as queue:
            with trio.fail_after(BOUND_S):
                assert await queue.state(Q, "never") is None
                job_id = await queue.enqueue("other", "send", {})
                assert await queue.state(Q, job_id) is None
                assert await nothing_ready(queue, Q)
                assert await queue.state("other", job_id) is JobState.WAITING
                with pytest.raises(ValueError, match="limit"):
                    await queue.lease(Q, worker="w1", limit=0, wait_s=0)
