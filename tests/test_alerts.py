"""Dead-letter alerts: the webhook gets a JSON POST; a failing webhook never raises."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

from jobs import DeadLetterAlerts, Job

BOUND_S = 10.0
JOB = Job(id="j1", queue="notifications", kind="notify.email", payload={}, attempt=5, enqueued_at=0)


@asynccontextmanager
async def receiver(status: int, received: list[dict[str, object]]) -> AsyncIterator[str]:
    """A loopback HTTP server that records JSON bodies and answers ``status``."""

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += await stream.receive_some(4096)
        received.append(json.loads(body))
        reply = f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        await stream.send_all(reply.encode())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/alerts"
        nursery.cancel_scope.cancel()


async def test_a_dead_lettered_job_is_posted_to_the_webhook() -> None:
    """The webhook receives the queue, job, kind, attempts and the last error."""
    received: list[dict[str, object]] = []
    async with receiver(200, received) as url:
        alerts = DeadLetterAlerts(url, timeout_s=2.0)
        with trio.fail_after(BOUND_S):
            await alerts.dead_lettered(JOB, error_type="UpstreamError", error_message="503")
    assert received == [
        {
            "alert": "job_dead_lettered",
            "queue": "notifications",
            "job_id": "j1",
            "kind": "notify.email",
            "attempts": 5,
            "error_type": "UpstreamError",
            "error_message": "503",
        }
    ]
    assert (alerts.sent, alerts.failed) == (1, 0)


async def test_a_failing_webhook_is_counted_not_raised() -> None:
    """A 500 from the webhook, or nothing listening: counted as failed, the caller goes on."""
    received: list[dict[str, object]] = []
    async with receiver(500, received) as url:
        alerts = DeadLetterAlerts(url, timeout_s=2.0)
        with trio.fail_after(BOUND_S):
            await alerts.dead_lettered(JOB, error_type="X", error_message="y")
    nowhere = DeadLetterAlerts("http://127.0.0.1:9/alerts", timeout_s=2.0)
    with trio.fail_after(BOUND_S):
        await nowhere.dead_lettered(JOB, error_type="X", error_message="y")
    assert (alerts.sent, alerts.failed, nowhere.failed) == (0, 1, 1)
