"""``GET /metrics``: the service in Prometheus's text format (prometheus-client).

- HTTP: ``lomash_http_requests_total{method, route, status}`` and
  ``lomash_http_request_duration_seconds{method, route}`` (a histogram), by route
  *template* (``/v1/appointments/<raw_id>``), never the raw path: an attacker's
  random paths are all ``route="unmatched"``. Counted by ``HttpMetrics``, the
  outermost ASGI layer, so every answer counts (the 503 of a request past its budget,
  the 413 of the edge) with the time the client saw.
- Per actor, read at scrape time from its mailbox and breaker: mailbox depth and
  capacity, in flight, processed, failed, crashes, restarts, rejections, retries,
  timeouts; breaker state (0 closed, 1 half-open, 2 open), transitions, rejections.
- Per dependency gate (Postgres, Redis): up (1/0), outages, refused calls.
- Per job queue (from Redis): jobs waiting, active, delayed, dead; from Postgres, the
  outbox backlog and the emails retried (no provider took them yet) and given up
  (undelivered after the 24 h window). A dependency that cannot be read leaves its
  series out of that scrape (``lomash_scrape_errors_total`` counts it), never a 5xx.
- Accounts: rate-limit decisions made open (Redis down), access tokens accepted
  without a session check (Redis down).

Served when ``LOMASH_METRICS_TOKEN`` is set (then only with ``Authorization: Bearer``
and that token), or outside production without one.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway._asgi import Receive, Scope, Send
from supervisors import ActorRef, BreakerState, LomashError

__all__ = ["CONTENT_TYPE", "OLDEST", "HttpMetrics", "ServiceMetrics", "route_of"]

OLDEST = "oldest_waiting_age_s"  # a queue's entry that is an age, not a count

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTE_KEY = "lomash.route"  # set in the ASGI scope by whoever matched the route
UNMATCHED = "unmatched"
_BREAKER_STATES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
# Seconds: from a cached read (~1 ms) to the request budget (8 s).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# No ``*_created`` series: their timestamps double the output and no alert uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def route_of(scope: Scope) -> str:
    route = scope.get(ROUTE_KEY)
    return route if isinstance(route, str) else UNMATCHED


class HttpMetrics:
    """Counts and times every request (outermost ASGI layer)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry | None) -> None:
        """``registry`` None: multiprocess mode (the values live in files that every
        worker's scrape adds up: see ``ServiceMetrics``)."""
        self._app = app
        self.requests = Counter(
            "lomash_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "lomash_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def counted(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, counted)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = route_of(scope)
            self._child(self.requests, (method, route, str(status or 499))).inc()
            self._child(self.duration, (method, route)).observe(time.perf_counter() - started)

    def _child(self, metric: Counter | Histogram, labels: tuple[str, ...]) -> Any:
        """``metric.labels(*labels)``, looked up once per label set (a route template
        and a status: few of them) instead of under the metric's lock per request."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class Snapshot:
    """What a scrape read from Redis and Postgres (async) before rendering (sync)."""

    queues: dict[str, dict[str, float]] = field(default_factory=dict)
    backlogs: dict[str, int] | None = None
    notifications: dict[tuple[str, str, str], int] | None = None


type Gauges = Callable[[], Sequence[tuple[str, Any]]]  # (dependency name, gate statistics)
type Counts = Callable[[], dict[str, int]]


class ServiceMetrics(Collector):
    """The state of the running tree, read when Prometheus scrapes."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        objects: CollectorRegistry | None,
        worker: str | None = None,
        actors: Sequence[ActorRef[Any, Any]],
        gates: Gauges,
        counts: Counts,
        queues: Callable[[], Awaitable[dict[str, dict[str, float]]]] | None = None,
        backlogs: Callable[[], Awaitable[dict[str, int]]] | None = None,
        notifications: Callable[[], Awaitable[dict[tuple[str, str, str], int]]] | None = None,
    ) -> None:
        self._actors = actors
        self._gates = gates
        self._counts = counts
        self._queues = queues
        self._backlogs = backlogs
        self._notifications = notifications
        self._worker = worker
        self._snapshot = Snapshot()
        self._lock = trio.Lock()
        self.scrape_errors = Counter(
            "lomash_scrape_errors",
            "Scrapes that could not read a dependency (its series were left out)",
            ["source"],
            registry=objects,
        )
        registry.register(self)
        self._registry = registry

    async def render(self) -> bytes:
        """The exposition text, after reading what lives in Redis and Postgres."""
        async with self._lock:  # one scrape at a time: it reads stores
            snapshot = Snapshot()
            if self._queues is not None:
                try:
                    snapshot.queues = await self._queues()
                except LomashError:
                    self.scrape_errors.labels("queues").inc()
            if self._backlogs is not None and self._notifications is not None:
                try:
                    snapshot.backlogs = await self._backlogs()
                    snapshot.notifications = await self._notifications()
                except LomashError:
                    self.scrape_errors.labels("postgres").inc()
            self._snapshot = snapshot
            return generate_latest(self._registry)

    def collect(self) -> Iterator[Metric]:
        for family in self._collect():
            # Several workers: each one's own state is its own series (the queues and
            # the outbox are the same whoever reads them).
            if self._worker is not None and family.name not in _SHARED:
                for sample in family.samples:
                    sample.labels["worker"] = self._worker
            yield family

    def _collect(self) -> Iterator[Metric]:
        yield from self._actor_metrics()
        up = GaugeMetricFamily(
            "lomash_dependency_up",
            "The dependency's gate lets calls through",
            labels=["dependency"],
        )
        outages = CounterMetricFamily(
            "lomash_dependency_outages", "Times the gate went down", labels=["dependency"]
        )
        refused = CounterMetricFamily(
            "lomash_dependency_refused_calls",
            "Calls refused at once while down",
            labels=["dependency"],
        )
        for name, stats in self._gates():
            up.add_metric([name], 1.0 if stats.up else 0.0)
            outages.add_metric([name], stats.outages)
            refused.add_metric([name], stats.refused)
        yield from (up, outages, refused)
        for name, value in self._counts().items():
            yield CounterMetricFamily(name, _COUNT_HELP.get(name, name), value=value)
        jobs = GaugeMetricFamily(
            "lomash_queue_jobs", "Jobs in a queue, by state", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "lomash_queue_oldest_waiting_age_seconds",
            "How long the next job to deliver has been waiting (absent: none waits)",
            labels=["queue"],
        )
        for queue, states in self._snapshot.queues.items():
            for state, count in states.items():
                if state == OLDEST:
                    oldest.add_metric([queue], count)
                else:
                    jobs.add_metric([queue, state], count)
        yield from (jobs, oldest)
        for name, count in (self._snapshot.backlogs or {}).items():
            yield GaugeMetricFamily(f"lomash_{name}", _BACKLOG_HELP[name], value=count)
        if self._snapshot.notifications is not None:
            sent = GaugeMetricFamily(
                "lomash_notifications_24h",
                "Notification attempts of the last 24 hours, by channel, provider, outcome",
                labels=["channel", "provider", "status"],
            )
            for labels, count in sorted(self._snapshot.notifications.items()):
                sent.add_metric(list(labels), count)
            yield sent

    def _actor_metrics(self) -> Iterator[Metric]:
        gauges = {
            "mailbox_depth": "Messages waiting in the actor's mailbox",
            "mailbox_capacity": "The mailbox's bound",
            "in_flight": "Messages being handled now",
        }
        counters = {
            "processed": "Messages handled",
            "failed": "Messages whose handling failed",
            "crashes": "Handler crashes (bugs)",
            "restarts": "Actor restarts",
            "rejected": "Messages refused at the door (mailbox full, breaker open)",
            "retries": "Retried attempts",
            "timeouts": "Messages past their timeout",
        }
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            key: GaugeMetricFamily(f"lomash_actor_{key}", text, labels=["actor"])
            for key, text in gauges.items()
        }
        families.update(
            {
                key: CounterMetricFamily(f"lomash_actor_{key}", text, labels=["actor"])
                for key, text in counters.items()
            }
        )
        state = GaugeMetricFamily(
            "lomash_breaker_state", "0 closed, 1 half-open, 2 open", labels=["actor"]
        )
        transitions = CounterMetricFamily(
            "lomash_breaker_transitions",
            "Breaker transitions, by the state entered",
            labels=["actor", "to"],
        )
        breaker_rejected = CounterMetricFamily(
            "lomash_breaker_rejected", "Calls the open breaker refused", labels=["actor"]
        )
        for ref in self._actors:
            s = ref.statistics()
            values = {
                "mailbox_depth": s.queued,
                "mailbox_capacity": s.capacity,
                "in_flight": s.in_flight,
                "processed": s.processed,
                "failed": s.failed,
                "crashes": s.crashed,
                "restarts": s.restarts,
                "rejected": s.rejected,
                "retries": s.retries,
                "timeouts": s.timeouts,
            }
            for key, value in values.items():
                families[key].add_metric([ref.name], value)
            if s.breaker is not None:
                b = s.breaker
                state.add_metric([ref.name], _BREAKER_STATES[b.state])
                transitions.add_metric([ref.name, "open"], b.opened)
                transitions.add_metric([ref.name, "half_open"], b.half_opened)
                transitions.add_metric([ref.name, "closed"], b.closed)
                breaker_rejected.add_metric([ref.name], b.rejected)
        yield from families.values()
        yield from (state, transitions, breaker_rejected)


_BACKLOG_HELP = {
    "outbox": "Outbox rows not yet relayed to a queue",
    "emails_retrying": "Emails no provider has taken yet, retried every 15 min",
    "emails_undelivered": "Emails given up after their 24 h retry window (alerted)",
}
_SHARED = frozenset(
    {
        "lomash_queue_jobs",
        "lomash_queue_oldest_waiting_age_seconds",
        "lomash_notifications_24h",
        *(f"lomash_{name}" for name in _BACKLOG_HELP),
    }
)
_COUNT_HELP = {
    "lomash_rate_limit_fail_open": "Rate-limit decisions allowed because Redis could not be asked",
    "lomash_session_checks_skipped": (
        "Access tokens accepted on signature and expiry only (Redis down)"
    ),
}


def authorised(token: str | None, authorization: str | None) -> bool:
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
