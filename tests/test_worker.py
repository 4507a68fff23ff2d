"""Job workers on the in-memory queue, in virtual time: dispatch, retries, drain, crash."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from config import JobSettings, QueuePolicy
from jobs import DeadLetterAlerts, JobQueue, JobState, JobWorker, MemoryJobQueue, RetryLater, RunJob
from supervisors import (
    ActorRef,
    ActorSpec,
    DependencyError,
    SupervisorSpec,
    TaskSpec,
    open_supervisor,
)

JOBS = JobSettings(lease_s=30.0, heartbeat_s=10.0, poll_s=1.0, concurrency=4)
POLICY = QueuePolicy(backoff_jitter=0.0)


class Handler:
    """Sleeps ``sleep_s`` from the payload, fails while ``fail`` says so, logs its calls."""

    def __init__(self, calls: list[tuple[float, str, int]]) -> None:
        self.calls = calls

    async def handle(self, message: RunJob) -> None:
        job = message.job
        self.calls.append((trio.current_time(), job.id, job.attempt))
        await trio.sleep(float(job.payload.get("sleep_s", 0)))
        if job.payload.get("fail"):
            raise DependencyError("provider down", dependency="ses")
        if len(self.calls) <= int(job.payload.get("later_times", 0)):
            raise RetryLater("database down", after_s=5.0)


def tree(
    queue: JobQueue,
    calls: list[tuple[float, str, int]],
    *,
    settings: JobSettings = JOBS,
    shutdown_s: float = 25.0,
    handlers: Any = None,
    alerts: DeadLetterAlerts | None = None,
) -> tuple[SupervisorSpec, list[JobWorker]]:
    spec: ActorSpec[RunJob, None] = ActorSpec(
        "handler",
        lambda: Handler(calls),
        mailbox=dataclasses.replace(
            ActorSpec("x", lambda: Handler(calls)).mailbox_settings,
            concurrency=16,
            message_timeout_s=None,
            ask_timeout_s=1000.0,
        ),
    )
    routes: dict[str, ActorRef[RunJob, Any]] = {"work": spec.ref}
    workers: list[JobWorker] = []

    def worker() -> JobWorker:
        made = JobWorker(
            "w1",
            queue,
            "q",
            handlers or (lambda: routes),
            settings,
            alerts or DeadLetterAlerts(None, timeout_s=1.0),
            cleanup_s=1.0,
        )
        workers.append(made)
        return made

    return (
        SupervisorSpec("root", [spec, TaskSpec("worker", worker, shutdown_s=shutdown_s)]),
        workers,
    )


async def test_a_job_is_handled_by_the_actor_owning_its_kind_and_completed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """enqueue -> lease -> RunJob ask -> complete; the queue says completed."""
    queue = MemoryJobQueue(default=POLICY)
    calls: list[tuple[float, str, int]] = []
    spec, workers = tree(queue, calls)
    async with open_supervisor(spec):
        await queue.enqueue("q", "work", {"sleep_s": 2}, job_id="j1")
        await trio.sleep(5)
        assert await queue.state("q", "j1") is JobState.COMPLETED
    assert [(job, attempt) for _, job, attempt in calls] == [("j1", 1)]
    assert workers[0].statistics().completed == 1


async def test_failures_retry_with_backoff_then_dead_letter_with_an_alert(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """5 attempts at 0, 1, 3, 7, 15 s (no jitter), then the DLQ and job_dead_lettered."""
    queue = MemoryJobQueue(default=POLICY)
    calls: list[tuple[float, str, int]] = []
    spec, workers = tree(queue, calls, settings=dataclasses.replace(JOBS, poll_s=0.5))
    with capture_logs() as logs:
        async with open_supervisor(spec):
            await queue.enqueue("q", "work", {"fail": True}, job_id="j1")
            await trio.sleep(60)
            dead = await queue.dead_job("q", "j1")
    times = [t for t, _, _ in calls]
    assert times == pytest.approx([0, 1, 3, 7, 15], abs=0.51)  # within one poll
    assert [a.error_type for a in dead.history] == ["DependencyError"] * 5
    [alert] = [e for e in logs if e["event"] == "job_dead_lettered"]
    assert (alert["job_id"], alert["attempts"], alert["error_type"]) == ("j1", 5, "DependencyError")
    assert workers[0].statistics().dead == 1


async def test_retry_later_hands_the_job_back_uncounted_however_often(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Ten RetryLater answers (twice the attempts allowed): delivered every 5 s with
    attempt 1 each time, then done; nothing dead-lettered."""
    queue = MemoryJobQueue(default=POLICY)
    calls: list[tuple[float, str, int]] = []
    spec, workers = tree(queue, calls, settings=dataclasses.replace(JOBS, poll_s=0.5))
    async with open_supervisor(spec):
        await queue.enqueue("q", "work", {"later_times": 10}, job_id="j1")
        await trio.sleep(120)
        assert await queue.state("q", "j1") is JobState.COMPLETED
    assert [t for t, _, _ in calls] == pytest.approx([5.0 * n for n in range(11)], abs=0.51)
    assert {attempt for _, _, attempt in calls} == {1}
    assert (workers[0].statistics().deferred, workers[0].statistics().dead) == (10, 0)


async def test_an_unknown_kind_fails_and_ends_in_the_dlq(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No actor owns the kind: every attempt fails as UnknownJobKind."""
    queue = MemoryJobQueue(default=dataclasses.replace(POLICY, attempts=2))
    spec, _ = tree(queue, [])
    async with open_supervisor(spec):
        await queue.enqueue("q", "nobody", {}, job_id="j1")
        await trio.sleep(10)
        dead = await queue.dead_job("q", "j1")
    assert [a.error_type for a in dead.history] == ["ActorCrashed", "ActorCrashed"]
    assert "UnknownJobKind" in dead.history[-1].error_message


async def test_no_more_than_concurrency_jobs_run_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """concurrency=4: ten 1 s jobs start at 0 (4), 1 (4) and 2 (2)."""
    queue = MemoryJobQueue(default=POLICY)
    calls: list[tuple[float, str, int]] = []
    spec, _ = tree(queue, calls)
    for n in range(10):
        await queue.enqueue("q", "work", {"sleep_s": 1}, job_id=f"j{n}")
    async with open_supervisor(spec):
        await trio.sleep(10)
    starts = sorted(round(t) for t, _, _ in calls)
    assert starts == [0] * 4 + [1] * 4 + [2] * 2


async def test_heartbeats_keep_a_long_job_leased(autojump_clock: trio.testing.MockClock) -> None:
    """A 100 s job with a 30 s lease is never redelivered: the heartbeat extends it."""
    queue = MemoryJobQueue(default=POLICY)
    calls: list[tuple[float, str, int]] = []
    spec, _ = tree(queue, calls)
    async with open_supervisor(spec):
        await queue.enqueue("q", "work", {"sleep_s": 100}, job_id="long")
        await trio.sleep(120)
        assert await queue.state("q", "long") is JobState.COMPLETED
        assert (await queue.statistics("q")).stalled_total == 0
    assert [(job, attempt) for _, job, attempt in calls] == [("long", 1)]


async def test_a_graceful_stop_finishes_running_jobs_and_takes_no_new_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Stop while a 5 s job runs: it completes; a job enqueued after the stop waits."""
    queue = MemoryJobQueue(default=POLICY)
    calls: list[tuple[float, str, int]] = []
    spec, _ = tree(queue, calls)
    async with open_supervisor(spec):
        await queue.enqueue("q", "work", {"sleep_s": 5}, job_id="running")
        await trio.sleep(1)
    assert trio.current_time() == pytest.approx(5.0, abs=1.01)
    assert await queue.state("q", "running") is JobState.COMPLETED
    await queue.enqueue("q", "work", {}, job_id="later")
    assert await queue.state("q", "later") is JobState.WAITING


async def test_a_job_outliving_the_drain_budget_is_handed_back_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Drain 10 s, job 100 s: cancelled at 10 s and released, its attempt not counted."""
    queue = MemoryJobQueue(default=POLICY)
    calls: list[tuple[float, str, int]] = []
    spec, workers = tree(queue, calls, shutdown_s=10.0)
    async with open_supervisor(spec):
        await queue.enqueue("q", "work", {"sleep_s": 100}, job_id="long")
        await trio.sleep(1)
    # The worker gave up at 1 + 10 s and handed the job back; the handler actor, still
    # inside the abandoned job, then used its own 5 s stop budget.
    assert trio.current_time() == pytest.approx(16.0)
    assert await queue.state("q", "long") is JobState.WAITING
    assert workers[0].statistics().released == 1
    [lease] = await queue.lease("q", worker="next", limit=1, wait_s=0)
    assert lease.job.attempt == 1


async def test_a_crashed_worker_is_restarted_and_its_job_redelivered_after_the_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A bug in the worker: the supervisor restarts it; the job comes back as a stall."""
    queue = MemoryJobQueue(default=POLICY)
    calls: list[tuple[float, str, int]] = []
    crash = [True]

    def handlers() -> Any:
        if crash:
            crash.clear()
            raise KeyError("a bug in the worker")
        return {"work": routes_holder[0]}

    routes_holder: list[Any] = []
    spec, workers = tree(queue, calls, handlers=handlers)
    routes_holder.append(spec.children[0].ref)  # type: ignore[attr-defined]
    async with open_supervisor(spec) as supervisor:
        await queue.enqueue("q", "work", {}, job_id="j1")
        await trio.sleep(40)
        assert await queue.state("q", "j1") is JobState.COMPLETED
        assert supervisor.statistics().restarts == 1
        assert (await queue.statistics("q")).stalled_total == 1
    assert len(workers) == 2
    assert [(job, attempt) for _, job, attempt in calls] == [("j1", 2)]
    assert calls[0][0] == pytest.approx(30.0, abs=1.01)  # after the 30 s lease expired


class SlowAlerts(DeadLetterAlerts):
    """Takes 0.5 s to alert, as a webhook might."""

    def __init__(self) -> None:
        super().__init__(None, timeout_s=1.0)
        self.delivered = 0

    async def dead_lettered(self, job: Any, *, error_type: str, error_message: str) -> None:
        await trio.sleep(0.5)
        self.delivered += 1


async def test_a_heartbeat_due_during_the_dead_letter_alert_does_not_cancel_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The last attempt fails 0.2 s before a heartbeat: the alert still goes out, no 'lost'."""
    queue = MemoryJobQueue(default=dataclasses.replace(POLICY, attempts=1))
    calls: list[tuple[float, str, int]] = []
    alerts = SlowAlerts()
    spec, workers = tree(queue, calls, alerts=alerts)
    async with open_supervisor(spec):
        await queue.enqueue("q", "work", {"sleep_s": 9.8, "fail": True}, job_id="j1")
        await trio.sleep(30)
        assert await queue.state("q", "j1") is JobState.DEAD
    assert alerts.delivered == 1
    assert workers[-1].statistics().lost == 0
