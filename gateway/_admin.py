"""The admin API: the dead-letter queue over HTTP, behind a bearer token.

    GET    /admin/queues/<queue>                        counts (waiting, active, dead, ...)
    GET    /admin/queues/<queue>/dead?limit=N           dead jobs, most recent first
    GET    /admin/queues/<queue>/dead/<job_id>          one dead job with its full history
    POST   /admin/queues/<queue>/dead/<job_id>/requeue  deliver it again, attempts afresh
    DELETE /admin/queues/<queue>/dead/<job_id>          purge one
    DELETE /admin/queues/<queue>/dead?all=true          purge all
    GET    /admin/notifications?reference=R             a booking's or order's
                                                        notification log, oldest first
    GET    /admin/notifications/failed?limit=N          emails waiting for a retry

Every request needs ``Authorization: Bearer <LOMASH_ADMIN_TOKEN>``; without a
configured token the routes do not exist (404).
"""

from __future__ import annotations

import dataclasses
import hmac

from quart import Response, request
from quart_trio import QuartTrio

from adapters import FailedEmail, LogEntry, NotificationStore
from gateway._json import NO_STORE, json_response
from jobs import DeadJob, JobQueue
from supervisors import InvalidRequest, Unauthorized

__all__ = ["register_admin_routes"]

MAX_LIST = 1000
MAX_REFERENCE = 64


def _summary(dead: DeadJob) -> dict[str, object]:
    last = dead.history[-1] if dead.history else None
    return {
        "job_id": dead.job.id,
        "kind": dead.job.kind,
        "attempts": dead.job.attempt,
        "died_at": dead.died_at,
        "last_error_type": last.error_type if last else None,
        "last_error": last.error_message if last else None,
    }


def _detail(dead: DeadJob) -> dict[str, object]:
    return {
        **_summary(dead),
        "payload": dict(dead.job.payload),
        "enqueued_at": dead.job.enqueued_at,
        "history": [dataclasses.asdict(attempt) for attempt in dead.history],
    }


def _log_row(entry: LogEntry) -> dict[str, object]:
    return {
        "job_id": entry.job_id,
        "kind": entry.kind,
        "channel": entry.channel.value,
        "provider": entry.provider,
        "recipient": entry.recipient,
        "status": entry.status.value,
        "provider_message_id": entry.provider_message_id,
        "error": entry.error,
        "attempted_at": entry.attempted_at.isoformat(),
    }


def _failed_row(failed: FailedEmail) -> dict[str, object]:
    last = failed.attempts[-1] if failed.attempts else None
    return {
        "job_id": failed.job_id,
        "kind": failed.kind,
        "reference": failed.reference,
        "subject": failed.email.subject,
        "attempts": len(failed.attempts),
        "retries": failed.retries,
        "first_attempt_at": failed.first_attempt_at.isoformat(),
        "retry_until": failed.retry_until.isoformat(),
        "last_error": f"{last.provider}: {last.error_type}: {last.error}" if last else None,
    }


def _limit() -> int:
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
        raise InvalidRequest(
            f"limit must be an integer from 1 to {MAX_LIST}", code="invalid_field", field="limit"
        )
    return int(raw)


def register_admin_routes(
    app: QuartTrio, jobs: JobQueue, token: str, notifications: NotificationStore
) -> None:
    expected = f"Bearer {token}".encode()

    @app.before_request
    async def authorise() -> None:
        if not request.path.startswith("/admin/"):
            return
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("a valid admin bearer token is required")

    @app.after_request
    async def private(response: Response) -> Response:
        if request.path.startswith("/admin/"):  # job payloads hold customers' details
            response.headers.update(NO_STORE)
        return response

    @app.get("/admin/queues/<queue>")
    async def queue_statistics(queue: str) -> Response:
        return json_response(dataclasses.asdict(await jobs.statistics(queue)))

    @app.get("/admin/queues/<queue>/dead")
    async def list_dead(queue: str) -> Response:
        dead = await jobs.dead(queue, limit=_limit())
        return json_response({"queue": queue, "dead": [_summary(d) for d in dead]})

    @app.get("/admin/queues/<queue>/dead/<job_id>")
    async def show_dead(queue: str, job_id: str) -> Response:
        return json_response(_detail(await jobs.dead_job(queue, job_id)))

    @app.post("/admin/queues/<queue>/dead/<job_id>/requeue")
    async def requeue_dead(queue: str, job_id: str) -> Response:
        await jobs.requeue_dead(queue, job_id)
        return json_response({"requeued": job_id})

    @app.delete("/admin/queues/<queue>/dead/<job_id>")
    async def purge_one(queue: str, job_id: str) -> Response:
        return json_response({"purged": await jobs.purge_dead(queue, job_id)})

    @app.delete("/admin/queues/<queue>/dead")
    async def purge_all(queue: str) -> Response:
        if request.args.get("all") != "true":
            raise InvalidRequest(
                "purging every dead job needs ?all=true", code="confirmation_required", field="all"
            )
        return json_response({"purged": await jobs.purge_dead(queue)})

    @app.get("/admin/notifications")
    async def notification_log() -> Response:
        reference = request.args.get("reference", "").strip()
        if not 1 <= len(reference) <= MAX_REFERENCE:
            raise InvalidRequest(
                f"reference: 1 to {MAX_REFERENCE} characters (a booking's or order's)",
                code="invalid_field",
                field="reference",
            )
        entries = await notifications.logs(reference, limit=_limit())
        return json_response({"reference": reference, "logs": [_log_row(e) for e in entries]})

    @app.get("/admin/notifications/failed")
    async def failed_emails() -> Response:
        waiting = await notifications.due_failed(_limit())
        return json_response({"failed": [_failed_row(f) for f in waiting]})
