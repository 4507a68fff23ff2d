"""Alerts: a structlog event always, a counter, and a webhook POST when configured.

The webhook stands in for the spec's SNS topic: ops point it at whatever pages them.
Two alerts go through it: a job entering the dead-letter queue, and an email still
undelivered when its retry window (24 h) closes. A failing webhook is logged and
never fails the caller.
"""

from __future__ import annotations

from typing import Any

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
        self.raised = 0  # alerts raised, webhook or not
        self.sent = 0
        self.failed = 0

    async def dead_lettered(self, job: Job, *, error_type: str, error_message: str) -> None:
        await self._alert(
            "job_dead_lettered",
            queue=job.queue,
            job_id=job.id,
            kind=job.kind,
            attempts=job.attempt,
            error_type=error_type,
            error_message=error_message,
        )

    async def email_undelivered(
        self, *, job_id: str, kind: str, reference: str, attempts: int, last_error: str
    ) -> None:
        """An email no provider took within its retry window: marked FAILED."""
        await self._alert(
            "email_undelivered",
            job_id=job_id,
            kind=kind,
            reference=reference,
            attempts=attempts,
            error_message=last_error,
        )

    async def _alert(self, alert: str, **fields: Any) -> None:
        self.raised += 1
        log.error(alert, **fields)
        if self._url is None:
            return
        body = {"alert": alert, **fields}
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
