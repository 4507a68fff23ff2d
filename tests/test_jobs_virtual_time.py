"""MemoryJobQueue on trio's autojump clock: exact schedules under the DEFAULT policy.

Five attempts, 1 s backoff doubling, 30 s leases, 24 h / 7 d retention, with the
jitter pinned (none, or the top of its +-10 % range), so every delivery, death and
expiry lands at an exact virtual time; a day of retention runs in milliseconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import trio
import trio.testing

from jobs._memory import MemoryJobQueue
from jobs._queue import JobState, Lease, QueuePolicy

BOUND_S = 30 * 24 * 3600.0  # virtual: no test here may run past this
DEFAULT = QueuePolicy()
Q = "mail"
DAY_S = 24 * 3600.0
EXACT = 1e-9


def no_jitter(low: float, high: float) -> float:
    return 0.0


def top_jitter(low: float, high: float) -> float:
    return high


async def lease_one(queue: MemoryJobQueue, *, worker: str = "w1") -> Lease:
    leases = await queue.lease(Q, worker=worker, limit=1, wait_s=DAY_S)
    assert len(leases) == 1
    return leases[0]


async def fail_until_dead(queue: MemoryJobQueue) -> tuple[list[float], list[float | None]]:
    """Fail every delivery at once; the delivery times and the announced backoffs."""
    start = trio.current_time()
    job_id = await queue.enqueue(Q, "charge", {"amount": 5})
    delivered: list[float] = []
    backoffs: list[float | None] = []
    while await queue.state(Q, job_id) is not JobState.DEAD:
        lease = await lease_one(queue)
        delivered.append(trio.current_time() - start)
        outcome = await queue.fail(
            lease, error_type="Declined", error_message=f"try {len(delivered)}"
        )
        backoffs.append(outcome.retry_in_s)
    return delivered, backoffs


@pytest.mark.parametrize(
    ("jitter", "deliveries"),
    [(no_jitter, [0, 1, 3, 7, 15]), (top_jitter, [0, 1.1, 3.3, 7.7, 16.5])],
    ids=["no-jitter", "top-jitter"],
)
async def test_failed_deliveries_follow_the_backoff_schedule_exactly(
    autojump_clock: trio.testing.MockClock,
    jitter: Callable[[float, float], float],
    deliveries: list[float],
) -> None:
    """Deliveries at 0, 1, 3, 7, 15 s (x1.1 with +10 % jitter); the 5th failure is final."""
    queue = MemoryJobQueue(jitter=jitter)
    with trio.fail_after(BOUND_S):
        delivered, backoffs = await fail_until_dead(queue)
    assert delivered == pytest.approx(deliveries, abs=EXACT)
    gaps = [b - a for a, b in itertools.pairwise(deliveries)]
    assert backoffs == pytest.approx([*gaps, None], abs=EXACT)


async def test_the_fifth_failure_dead_letters_with_five_timed_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """DLQ entry: five 'failed' attempts, each started and ended at its exact time."""
    queue = MemoryJobQueue(jitter=no_jitter)
    start = trio.current_time()
    with trio.fail_after(BOUND_S):
        await fail_until_dead(queue)
        [dead] = await queue.dead(Q, limit=10)
    assert dead.job.attempt == DEFAULT.attempts == 5
    assert [(h.attempt, h.outcome, h.error_type, h.error_message) for h in dead.history] == [
        (n, "failed", "Declined", f"try {n}") for n in range(1, 6)
    ]
    assert [h.started_at - start for h in dead.history] == pytest.approx(
        [0, 1, 3, 7, 15], abs=EXACT
    )
    assert [h.ended_at - start for h in dead.history] == pytest.approx([0, 1, 3, 7, 15], abs=EXACT)
    assert dead.died_at - start == pytest.approx(15, abs=EXACT)


async def test_a_stalled_job_is_redelivered_at_exactly_lease_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A worker that dies holding a lease: the job comes back at t=30 s as attempt 2."""
    queue = MemoryJobQueue(jitter=no_jitter)
    start = trio.current_time()
    with trio.fail_after(BOUND_S):
        job_id = await queue.enqueue(Q, "send", {})
        await lease_one(queue, worker="killed")
        again = await lease_one(queue, worker="w2")
        assert trio.current_time() - start == pytest.approx(DEFAULT.lease_s, abs=EXACT)
        assert (again.job.id, again.job.attempt) == (job_id, 2)
        assert (await queue.statistics(Q)).stalled_total == 1
        await queue.fail(again, error_type="E", error_message="x")
        for _ in range(2, DEFAULT.attempts):
            await lease_one(queue)  # each of these stalls in turn
        assert await queue.lease(Q, worker="w3", limit=1, wait_s=DEFAULT.lease_s) == []
        dead = await queue.dead_job(Q, job_id)
    assert [h.outcome for h in dead.history] == [
        "stalled",
        "failed",
        "stalled",
        "stalled",
        "stalled",
    ]
    first = dead.history[0]
    assert (first.started_at - start, first.ended_at - start) == pytest.approx(
        (0, DEFAULT.lease_s), abs=EXACT
    )


async def test_a_heartbeat_moves_the_stall_to_lease_s_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A heartbeat at t=29 s keeps the job until t=59 s, when it is redelivered."""
    queue = MemoryJobQueue(jitter=no_jitter)
    start = trio.current_time()
    with trio.fail_after(BOUND_S):
        await queue.enqueue(Q, "send", {})
        lease = await lease_one(queue)
        await trio.sleep(DEFAULT.lease_s - 1)
        renewed = await queue.heartbeat(lease)
        assert renewed.expires_at - start == pytest.approx(2 * DEFAULT.lease_s - 1, abs=EXACT)
        again = await lease_one(queue, worker="w2")
        assert trio.current_time() - start == pytest.approx(2 * DEFAULT.lease_s - 1, abs=EXACT)
        assert again.job.attempt == 2


async def test_completed_jobs_are_kept_for_a_day(autojump_clock: trio.testing.MockClock) -> None:
    """A completed job survives trim at 24 h - 1 s and is forgotten by trim at 24 h."""
    queue = MemoryJobQueue(jitter=no_jitter)
    start = trio.current_time()
    with trio.fail_after(BOUND_S):
        job_id = await queue.enqueue(Q, "send", {})
        await queue.complete(await lease_one(queue))
        await trio.sleep_until(start + DEFAULT.keep_completed_s - 1)
        assert await queue.trim(Q) == 0
        assert await queue.state(Q, job_id) is JobState.COMPLETED
        await trio.sleep_until(start + DEFAULT.keep_completed_s)
        assert await queue.trim(Q) == 1
        assert await queue.state(Q, job_id) is None


async def test_dead_jobs_are_kept_for_a_week(autojump_clock: trio.testing.MockClock) -> None:
    """A dead job survives trim at 7 d - 1 s and is forgotten by trim at 7 d."""
    queue = MemoryJobQueue(jitter=no_jitter)
    with trio.fail_after(BOUND_S):
        await fail_until_dead(queue)
        [dead] = await queue.dead(Q, limit=10)
        await trio.sleep_until(dead.died_at + DEFAULT.keep_dead_s - 1)
        assert await queue.trim(Q) == 0
        assert await queue.state(Q, dead.job.id) is JobState.DEAD
        await trio.sleep_until(dead.died_at + DEFAULT.keep_dead_s)
        assert await queue.trim(Q) == 1
        assert await queue.dead(Q, limit=10) == []
