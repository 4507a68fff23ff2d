"""Dead-letter alerts: a structlog event always, a webhook POST when configured.

The webhook stands in for the spec's SNS topic: ops point it at whatever pages them.
A failing webhook is logged and never fails the caller.
"""

from __future__ import annotations

import httpx
import structlog
import trio

from jobs._queue import Job

__all__ = ["DeadLetterAlerts"]

log = structlog.get_logger("adapters.alerts")


class DeadLetterAlerts:
    def __init__(self, webhook_url: str | None, *, timeout_s: float) -> None:
        self._url = webhook_url
        self._timeout_s = timeout_s
        self.sent = 0
        self.failed = 0

    async def dead_lettered(self, job: Job, *, error_type: str, error_message: str) -> None:
        log.error(
            "job_dead_lettered",
            queue=job.queue,
            job_id=job.id,
            kind=job.kind,
            attempts=job.attempt,
            error_type=error_type,
            error=error_message,
        )
        if self._url is None:
            return
        body = {
            "alert": "job_dead_lettered",
            "queue": job.queue,
            "job_id": job.id,
            "kind": job.kind,
            "attempts": job.attempt,
            "error_type": error_type,
            "error_message": error_message,
        }
        with trio.move_on_after(self._timeout_s) as deadline:
            try:
                async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                    response = await client.post(self._url, json=body)
                response.raise_for_status()
                self.sent += 1
                return
            except httpx.HTTPError as error:
                log.warning("alert_webhook_failed", error_type=type(error).__name__)
        if deadline.cancelled_caught:
            log.warning("alert_webhook_failed", error_type="timeout")
        self.failed += 1
