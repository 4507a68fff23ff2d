"""The job-queue peer: saq on plain asyncio, measured like ours (see bench/jobs.py).

python -m bench.peers.saq_peer JOBS SAMPLES CONCURRENCY   -> one JSON line
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sys
import time
from typing import Any

from saq import Queue, Worker

REDIS_URL = "redis://127.0.0.1:6379/0"
# saq finds a job's function by its qualified name: it has to live at module level.
STARTED: list[float] = []


async def noop(ctx: Any) -> None:
    STARTED.append(time.perf_counter())


async def saq_peer(jobs: int, samples: int, concurrency: int) -> dict[str, Any]:
    started = STARTED
    queue = Queue.from_url(REDIS_URL, name=f"saq_bench_{secrets.token_hex(4)}")
    await queue.connect()
    worker: Worker[Any] = Worker(queue, functions=[noop], concurrency=concurrency)
    begin = time.perf_counter()
    for _ in range(jobs):
        await queue.enqueue(noop.__qualname__)
    enqueue_s = time.perf_counter() - begin
    task = asyncio.create_task(worker.start())
    begin = time.perf_counter()
    while True:
        if len(started) >= jobs:
            break
        await asyncio.sleep(0.005)
    process_s = time.perf_counter() - begin
    latency = []
    for _ in range(samples):
        seen = len(started)
        await asyncio.sleep(0.01)
        sent = time.perf_counter()
        await queue.enqueue(noop.__qualname__)
        while True:
            if len(started) > seen:
                break
            await asyncio.sleep(0.0005)
        latency.append((started[-1] - sent) * 1000)
    await worker.stop()
    task.cancel()
    await queue.disconnect()
    return {
        "enqueue_per_s": jobs / enqueue_s,
        "process_per_s": jobs / process_s,
        "latency_ms": latency,
    }


def main() -> None:
    logging.getLogger("saq").setLevel(logging.CRITICAL)
    jobs, samples, concurrency = (int(arg) for arg in sys.argv[1:4])
    print(json.dumps(asyncio.run(saq_peer(jobs, samples, concurrency))))


if __name__ == "__main__":
    main()
