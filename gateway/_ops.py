"""The operator's page: ``GET /ops`` and the one JSON it refreshes from.

- ``GET /ops``: a server-sent page and its own script and styles (``/ops/ops.js``,
  ``/ops/ops.css``: same origin, nothing from elsewhere, a strict Content-Security-
  Policy). The page holds no data: it asks for the admin token, keeps it in the tab's
  ``sessionStorage``, and fetches with ``Authorization: Bearer``.
- ``GET /admin/overview`` (admin token): the supervision tree (each actor: running,
  mailbox depth and capacity, in flight, restarts, crashes, breaker state and its
  latest transitions), every queue's counts, each queue's dead jobs with their
  attempt history (at most ``DEAD_SHOWN`` each), the latest notification attempts (the
  notifications log), the emails waiting for a retry.
  What Redis or Postgres cannot give now is reported as such, never a 5xx.

The buttons use the admin API (gateway/_admin.py): requeue, purge.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Sequence
from typing import Any

from quart import Response
from quart_trio import QuartTrio

from adapters import NotificationStore
from gateway._json import NO_STORE, json_response
from jobs import JobQueue
from supervisors import ActorRef, LomashError, NotFound

__all__ = ["DEAD_SHOWN", "register_ops_routes"]

DEAD_SHOWN = 20
_FILES = {"ops.js": "text/javascript", "ops.css": "text/css"}
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _actor(ref: ActorRef[Any, Any]) -> dict[str, Any]:
    s = ref.statistics()
    breaker = None
    if s.breaker is not None:
        b = s.breaker
        breaker = {
            "state": b.state.value,
            "opened": b.opened,
            "rejected": b.rejected,
            "recent": [{"at": at, "state": state.value} for at, state in b.recent],
        }
    return {
        "name": ref.name,
        "running": s.running,
        "queued": s.queued,
        "capacity": s.capacity,
        "in_flight": s.in_flight,
        "processed": s.processed,
        "restarts": s.restarts,
        "crashed": s.crashed,
        "breaker": breaker,
    }


def register_ops_routes(
    app: QuartTrio,
    *,
    actors: Sequence[ActorRef[Any, Any]],
    jobs: JobQueue,
    queues: Sequence[str],
    notifications: NotificationStore,
) -> None:
    folder = importlib.resources.files("gateway") / "ops"
    page = (folder / "ops.html").read_bytes()
    files = {name: (folder / name).read_bytes() for name in _FILES}
    headers = {**NO_STORE, "Content-Security-Policy": _POLICY, "X-Frame-Options": "DENY"}

    @app.get("/ops")
    async def ops_page() -> Response:
        return Response(page, content_type="text/html; charset=utf-8", headers=headers)

    @app.get("/ops/<name>")
    async def ops_file(name: str) -> Response:
        if name not in files:
            raise NotFound("no such file")
        return Response(files[name], content_type=_FILES[name], headers=headers)

    @app.get("/admin/overview")
    async def overview() -> Response:
        answer: dict[str, Any] = {"actors": [_actor(ref) for ref in actors]}
        try:
            counts = []
            dead: dict[str, list[dict[str, Any]]] = {}
            for queue in queues:
                counts.append(dataclasses.asdict(await jobs.statistics(queue)))
                dead[queue] = [
                    {
                        "job_id": d.job.id,
                        "kind": d.job.kind,
                        "attempts": d.job.attempt,
                        "died_at": d.died_at,
                        "history": [dataclasses.asdict(a) for a in d.history],
                    }
                    for d in await jobs.dead(queue, limit=DEAD_SHOWN)
                ]
            answer["queues"], answer["dead"] = counts, dead
        except LomashError as error:
            answer["queues_error"] = error.message
        try:
            answer["notifications"] = [
                {
                    "attempted_at": e.attempted_at.isoformat(),
                    "kind": e.kind,
                    "reference": e.reference,
                    "channel": e.channel.value,
                    "provider": e.provider,
                    "status": e.status.value,
                    "error": e.error,
                }
                for e in await notifications.recent_logs(limit=DEAD_SHOWN)
            ]
            waiting = await notifications.due_failed(DEAD_SHOWN)
            answer["failed_emails"] = [
                {
                    "reference": f.reference,
                    "subject": f.email.subject,
                    "attempts": len(f.attempts),
                    "retry_until": f.retry_until.isoformat(),
                }
                for f in waiting
            ]
        except LomashError as error:
            answer["failed_emails_error"] = error.message
        return json_response(answer, headers=NO_STORE)
