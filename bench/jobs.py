"""Job queue benchmark: this queue + worker vs saq, on the same Redis, side by side.

    python -m bench.jobs [--jobs 2000] [--latency-samples 200] [--concurrency 10]

For each implementation, with a no-op job:
1. enqueue rate: ``--jobs`` jobs enqueued one after another (jobs/s);
2. processing rate: one worker (``--concurrency`` jobs at a time) drains them (jobs/s);
3. pickup latency: a single job enqueued into an idle, waiting worker, time until its
   handler starts, repeated ``--latency-samples`` times (p50 / p99).
Ours goes through the whole path a production job takes: RedisJobQueue (Lua, leases,
fencing), JobWorker (heartbeats), an ``ask`` to the handling actor, completion.
Prints ratios ours / saq (higher is better for rates, lower for latency).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio
import trio_asyncio

from adapters import open_redis
from config import JobSettings, RedisSettings
from jobs import DeadLetterAlerts, JobWorker, RedisJobQueue, RunJob
from supervisors import ActorSpec, SupervisorSpec, TaskSpec, open_supervisor

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True, slots=True)
class Result:
    enqueue_per_s: float
    process_per_s: float
    latency_ms: list[float]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Noop:
    def __init__(self, started: list[float]) -> None:
        self.started = started

    async def handle(self, message: RunJob) -> None:
        self.started.append(time.perf_counter())


async def ours(jobs: int, samples: int, concurrency: int) -> Result:
    prefix = f"lomash_bench:{secrets.token_hex(4)}:"
    started: list[float] = []
    settings = JobSettings(concurrency=concurrency, poll_s=1.0)
    async with (
        trio_asyncio.open_loop(),
        open_redis(RedisSettings(url=REDIS_URL, prefix=prefix), cleanup_s=2.0) as cache,
    ):
        queue = RedisJobQueue(cache, prefix="jobs")
        begin = time.perf_counter()
        for n in range(jobs):
            await queue.enqueue("bench", "noop", {"n": n})
        enqueue_s = time.perf_counter() - begin

        handler: ActorSpec[RunJob, None] = ActorSpec("noop", lambda: Noop(started))
        workers: list[JobWorker] = []

        def worker() -> JobWorker:
            made = JobWorker(
                "bench-worker",
                queue,
                "bench",
                lambda: {"noop": handler.ref},
                settings,
                DeadLetterAlerts(None, timeout_s=1.0),
                cleanup_s=1.0,
            )
            workers.append(made)
            return made

        tree = SupervisorSpec("bench", [handler, TaskSpec("worker", worker)])
        async with open_supervisor(tree):
            begin = time.perf_counter()
            while True:  # a bench polls: an Event would add a wake-up to the hot path
                if workers[0].statistics().completed >= jobs:
                    break
                await trio.sleep(0.005)
            process_s = time.perf_counter() - begin
            latency = []
            for n in range(samples):
                done = workers[0].statistics().completed
                await trio.sleep(0.01)  # the worker is idle, blocked in its lease wait
                sent = time.perf_counter()
                await queue.enqueue("bench", "noop", {"n": n})
                while True:
                    if workers[0].statistics().completed > done:
                        break
                    await trio.sleep(0.0005)
                latency.append((started[-1] - sent) * 1000)
        await cache.run(lambda client: _delete_prefix(client, prefix))
    return Result(jobs / enqueue_s, jobs / process_s, latency)


async def _delete_prefix(client: Any, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)


def saq_peer(jobs: int, samples: int, concurrency: int) -> Result:
    """The peer runs in its own process: importing trio-asyncio (as we do) replaces
    asyncio's loop policy, and saq needs plain asyncio."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.peers.saq_peer", str(jobs), str(samples), str(concurrency)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    measured = json.loads(output)
    return Result(measured["enqueue_per_s"], measured["process_per_s"], measured["latency_ms"])


def row(name: str, result: Result) -> str:
    return (
        f"{name:<6} {result.enqueue_per_s:>10.0f} {result.process_per_s:>10.0f} "
        f"{percentile(result.latency_ms, 0.5):>9.2f} {percentile(result.latency_ms, 0.99):>9.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="job queue benchmark vs saq")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    peer = saq_peer(args.jobs, args.latency_samples, args.concurrency)
    run: Callable[..., Any] = trio.run
    mine: Result = run(ours, args.jobs, args.latency_samples, args.concurrency)
    print(
        f"job queue benchmark: {args.jobs} no-op jobs, worker concurrency {args.concurrency}, "
        f"{args.latency_samples} latency samples, same Redis, one process each"
    )
    print(f"{'impl':<6} {'enqueue/s':>10} {'process/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    print(row("ours", mine))
    print(row("saq", peer))
    print(
        f"ratios ours/saq: enqueue {mine.enqueue_per_s / peer.enqueue_per_s:.2f}x, "
        f"process {mine.process_per_s / peer.process_per_s:.2f}x, pickup p50 "
        f"{percentile(mine.latency_ms, 0.5) / percentile(peer.latency_ms, 0.5):.2f}x "
        f"(latency: lower is better); mean pickup ours "
        f"{statistics.fmean(mine.latency_ms):.2f} ms, "
        f"saq {statistics.fmean(peer.latency_ms):.2f} ms"
    )


if __name__ == "__main__":
    main()
