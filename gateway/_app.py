"""The Quart-Trio app: request ids, one log line per request, errors as JSON.

Routes:

- ``GET /health``: the spec's health document (database, redis), 200 healthy,
  200 degraded (Redis down: the service runs without it), 503 unhealthy (database down).
- ``GET /health/live``: the process answers; no dependencies (container health check).
- ``GET /health/ready``: 503 while draining or while the database is down (load balancer);
  the database's verdict is at most ``LOMASH_HEALTH_READY_MEMORY_S`` old (gateway/_ready.py).
- ``GET /v1/showrooms``: the showrooms, through the catalogue actor.
- ``GET /v1/products...``: the ranges on sale (gateway/_products.py).
- ``/v1/appointments...``: availability and bookings (gateway/_appointments.py).
- ``/v1/auth/...``, ``/v1/me...``: accounts and sessions (gateway/_accounts.py).
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import structlog
import trio
import werkzeug.exceptions
from quart import Response, current_app, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from actors import CatalogueMessage, CatalogueReply, ListShowrooms
from adapters import Cache, Database, PostgresNotificationStore, Showroom
from config import Environment, Settings
from gateway._accounts import register_account_routes
from gateway._admin import register_admin_routes
from gateway._appointments import register_appointment_routes
from gateway._auth import AccountGuard
from gateway._http_errors import error_response
from gateway._json import NO_STORE, json_response
from gateway._metrics import CONTENT_TYPE, ROUTE_KEY, UNMATCHED, ServiceMetrics, authorised
from gateway._openapi import register_docs_routes
from gateway._ops import register_ops_routes
from gateway._orders import register_order_routes
from gateway._products import register_product_routes
from gateway._ready import Readiness, database_readiness, dependency_check, ready_answer
from gateway._webhooks import register_webhook_routes
from jobs import JobQueue
from supervisors import (
    ActorRef,
    InvalidRequest,
    LomashError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)

__all__ = [
    "LIVE",
    "REQUEST_ID_KEY",
    "Lifecycle",
    "Services",
    "create_app",
    "log_request",
    "request_id",
    "showrooms_view",
]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

log = structlog.get_logger("gateway")


@dataclass
class Lifecycle:
    """Process-wide state the health routes report."""

    draining: bool = False
    started_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    database: Database
    cache: Cache
    catalogue: ActorRef[CatalogueMessage, CatalogueReply]
    lifecycle: Lifecycle
    jobs: JobQueue | None = None
    # The SlotBooker and the BookingReader; without them the appointment routes are
    # not served.
    booker: ActorRef[Any, Any] | None = None
    reader: ActorRef[Any, Any] | None = None
    # The OrderActor; without it (Stripe not configured) the order routes are not served.
    orders: ActorRef[Any, Any] | None = None
    # The AccountActor and the SessionKeeper; without them no /v1/auth or /v1/me routes.
    accounts: ActorRef[Any, Any] | None = None
    sessions: ActorRef[Any, Any] | None = None
    # Access tokens and rate limits, shared with the fast booking route (one is made
    # from the settings and the cache when none is given).
    guard: AccountGuard | None = None
    # The tree's actors, for the ops page.
    actors: Sequence[ActorRef[Any, Any]] = ()
    # What GET /metrics renders (none: no /metrics).
    metrics: ServiceMetrics | None = None
    # The readiness verdict, shared with the fast route (one is made when none is
    # given: ``database_readiness`` with the booker and the catalogue as guards).
    readiness: Readiness | None = None
    # Routes a launcher adds (the tests' /_test/...); the service ships none.
    extra_routes: Sequence[Callable[[QuartTrio], None]] = ()


# New request ids: this process's random prefix and a counter (32 hex digits, as a
# uuid4's hex): unique across processes without a system call per request.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()
# Where the outermost layer that settled the request's id keeps it (RequestBudget).
REQUEST_ID_KEY = "lomash.request_id"


def request_id(given: str | None) -> str:
    """The caller's ``X-Request-ID`` if it is a sane one, else a new id."""
    if given is not None and _REQUEST_ID.match(given):
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


LIVE = {"status": "alive"}  # GET /health/live's answer, always


def showrooms_view(rows: list[Showroom]) -> dict[str, Any]:
    """``GET /v1/showrooms``'s answer (also served from the catalogue's snapshot)."""
    return {"showrooms": rows}


def log_request(
    method: str, path: str, status: int, started: float, *, rid: str | None = None
) -> None:
    """The one canonical line per request (its request id: ``rid``, or the context's)."""
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    if rid is None:
        log.info("request", method=method, path=path, status=status, duration_ms=duration_ms)
    else:
        log.info(
            "request",
            method=method,
            path=path,
            status=status,
            duration_ms=duration_ms,
            request_id=rid,
        )


def from_werkzeug(error: HTTPException, *, max_body_bytes: int) -> LomashError:
    """Quart's routing and body errors as ours, so the one table answers them."""
    match error:
        case werkzeug.exceptions.NotFound() | RequestRedirect():
            # No redirect is ever built (it would point at the client's Host header).
            return NotFound("no such resource")
        case werkzeug.exceptions.MethodNotAllowed():
            return MethodNotAllowed(
                request.method, allowed=tuple(sorted(error.valid_methods or ()))
            )
        case werkzeug.exceptions.RequestEntityTooLarge():
            return PayloadTooLarge(limit=max_body_bytes)
        case werkzeug.exceptions.RequestTimeout():
            return RequestTimeout(timeout_s=current_app.config["BODY_TIMEOUT"])
        case werkzeug.exceptions.UnsupportedMediaType():
            return UnsupportedMediaType("this media type is not accepted here")
        case _:
            return InvalidRequest("the request is malformed", code="bad_request", malformed=True)


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_app(services: Services) -> QuartTrio:
    settings = services.settings
    app = QuartTrio("lomash")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["BODY_TIMEOUT"] = settings.http.body_timeout_s
    # No redirects: werkzeug would build one to the client's Host header
    # (``GET /v1//showrooms`` with ``Host: evil.example``); an odd path is a 404.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False

    def error_json(error: BaseException) -> Response:
        mapped = error_response(error, default_retry_after_s=settings.unavailable_retry_after_s)
        return json_response(
            mapped.body(getattr(g, "request_id", "")), mapped.status, mapped.headers()
        )

    @app.before_request
    async def start_request() -> None:
        g.request_id = request_id(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)
        rule = request.url_rule
        scope = cast(dict[str, Any], request.scope)
        scope[ROUTE_KEY] = rule.rule if rule is not None else UNMATCHED

    @app.after_request
    async def finish_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.request_id
        if services.lifecycle.draining:
            # Keep-alive connections would otherwise hold the drain open until its
            # deadline: ask the client to reconnect (to another task) next time.
            response.headers["Connection"] = "close"
        log_request(request.method, request.path, response.status_code, g.started)
        structlog.contextvars.unbind_contextvars("request_id")
        return response

    @app.errorhandler(LomashError)
    async def lomash_error(error: LomashError) -> Response:
        if error_response(error, default_retry_after_s=0).status >= 500:
            log.warning("request_failed", error_type=type(error).__name__, error=error.message)
        return error_json(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return error_json(from_werkzeug(error, max_body_bytes=settings.max_body_bytes))

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        log.error("unhandled_error", error_type=type(error).__name__, exc_info=error)
        return error_json(error)

    # Actors whose breaker guards Postgres: one open means the database is not usable.
    database_actors = [ref for ref in (services.booker, services.catalogue) if ref is not None]

    async def check_database() -> str:
        timeout_s = settings.health.database_timeout_s
        return await dependency_check(services.database, timeout_s, database_actors)

    readiness = services.readiness or database_readiness(
        services.database, settings.health, database_actors
    )

    @app.get("/health")
    async def health() -> Response:
        checks: dict[str, str] = {}

        async def database() -> None:
            checks["database"] = await check_database()

        async def redis() -> None:
            timeout_s = settings.health.redis_timeout_s
            checks["redis"] = await dependency_check(services.cache, timeout_s)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(database)
            nursery.start_soon(redis)
        if checks["database"] != "ok":
            status, code = "unhealthy", 503
        elif checks["redis"] != "ok":
            status, code = "degraded", 200
        else:
            status, code = "healthy", 200
        return json_response(
            {
                "status": status,
                "timestamp": _timestamp(),
                "service": settings.service,
                "version": settings.version,
                "checks": {"database": checks["database"], "redis": checks["redis"]},
            },
            code,
        )

    @app.get("/health/live")
    async def live() -> Response:
        return json_response(LIVE)

    @app.get("/health/ready")
    async def ready() -> Response:
        draining = services.lifecycle.draining
        database = None if draining else await readiness.database()
        status, document = ready_answer(draining, database)
        return json_response(document, status)

    @app.get("/v1/showrooms")
    async def showrooms() -> Response:
        rows = cast(list[Showroom], await services.catalogue.ask(ListShowrooms()))
        return json_response(showrooms_view(rows))

    guard = services.guard or AccountGuard(settings.auth, services.cache)
    register_product_routes(app, services.catalogue, settings.products)
    if services.orders is not None:
        register_order_routes(app, services.orders, guard)
        if settings.stripe.webhook_secret is not None:
            register_webhook_routes(app, services.orders, settings.stripe)
    if services.booker is not None and services.reader is not None:
        register_appointment_routes(
            app, services.booker, services.reader, services.catalogue, settings.booking, guard
        )
    if services.accounts is not None and services.sessions is not None:
        register_account_routes(
            app, guard, services.accounts, services.sessions, services.reader, services.orders
        )

    metrics = services.metrics
    if metrics is not None and (
        settings.metrics_token is not None or settings.environment is not Environment.PRODUCTION
    ):

        @app.get("/metrics")
        async def metrics_text() -> Response:
            if not authorised(settings.metrics_token, request.headers.get("Authorization")):
                raise Unauthorized("this needs the metrics token (Authorization: Bearer ...)")
            return Response(await metrics.render(), content_type=CONTENT_TYPE, headers=NO_STORE)

    register_docs_routes(app, version=settings.version)
    for register in services.extra_routes:
        register(app)
    if settings.admin_token and services.jobs is not None:
        notifications = PostgresNotificationStore(services.database)
        register_admin_routes(app, services.jobs, settings.admin_token, notifications)
        register_ops_routes(
            app,
            actors=services.actors,
            jobs=services.jobs,
            queues=settings.jobs.service_queues(),
            notifications=notifications,
        )

    return app
