"""The process's supervision tree: resources, domain actors, the HTTP server.

    root (rest_for_one)
    ├── postgres   Resource: the pools (open_database)
    ├── redis      Resource: the client (open_redis)
    ├── stripe     Resource: the SDK's client (open_stripe), when Stripe is configured
    ├── ses, twilio, msg91   Resources: the providers' clients, those configured
    ├── domain     one_for_one: catalogue, slot-booker, booking-reader, booking-replayer,
    │              accounts, sessions,
    │              with Stripe: payments, orders, payments-reconciler; a sender per
    │              provider (ses-sender, smtp-sender, twilio-sender, ...), notifier
    ├── jobs       one_for_one: outbox relay, trimmer, scheduler, a worker per queue
    └── http       HttpServer: hypercorn on trio, stopped first on shutdown

rest_for_one: whatever depends on a resource started after it, so if a resource is
ever restarted, everything after it restarts with the new one (each reads the
current value from a ``Holder`` when it starts). Shutdown runs in reverse: the HTTP
server drains first, then the actors, then Redis and Postgres close.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from quart_trio import QuartTrio

from actors import (
    RECONCILE_KIND,
    REPLAY_KIND,
    Availability,
    AvailabilityMemory,
    BookingReader,
    BookingReplayer,
    ListProducts,
    ListShowrooms,
    ProductCatalogue,
    RosterSource,
    SlotBooker,
    catalogue_spec,
)
from actors._snapshots import PRODUCTS, SHOWROOMS, Snapshots
from adapters import (
    BookingCache,
    BookingStore,
    Cache,
    Database,
    PostgresBookingStore,
    PostgresProducts,
    PostgresShowrooms,
    RedisBookingCache,
    RedisProductCache,
    open_database,
    open_redis,
)
from config import (
    BreakerSettings,
    Settings,
    booker_mailbox,
    replayer_mailbox,
)
from gateway import (
    EdgeGuard,
    FastRoutes,
    HttpServer,
    Lifecycle,
    RequestBudget,
    Services,
    create_app,
)
from gateway._app import showrooms_view
from gateway._auth import AccountGuard
from gateway._cors import Cors
from gateway._fast import ASGIApp, FastRead
from gateway._metrics import HttpMetrics
from gateway._products import cache_headers, products_view
from gateway._ready import database_readiness
from jobs import (
    DeadLetterAlerts,
    JobQueue,
    RedisJobQueue,
    RunJob,
)
from service._account_tree import account_actors
from service._commerce_tree import commerce_actors
from service._jobs_tree import jobs_tree
from service._metrics import registries, service_metrics
from service._notify_tree import notification_tree
from supervisors import (
    ActorRef,
    ActorSpec,
    ChildSpec,
    Forever,
    Holder,
    Resource,
    Restart,
    Strategy,
    SupervisorSpec,
    TaskSpec,
)

__all__ = ["Extension", "build_tree", "database_breaker"]

log = structlog.get_logger("service")


def database_breaker(settings: Settings) -> BreakerSettings:
    """The breaker of actors that talk to Postgres: the spec's thresholds, but it
    half-opens as often as the reconnect gate probes (``reconnect_max_s``), so a
    database that is back is used again within that, inside the 30 s window."""
    return dataclasses.replace(
        settings.runtime.breaker,
        reset_timeout_s=min(
            settings.runtime.breaker.reset_timeout_s, settings.database.reconnect_max_s
        ),
    )


@dataclass(frozen=True, slots=True)
class Extension:
    """What a launcher adds to the tree: routes on the app, actors (with the job kind
    each one handles, if any) made from the database holder and the settings, and an
    ASGI layer around everything (the chaos launcher's service made wrong on purpose).
    The service itself ships none; the tests install their routes this way."""

    routes: Callable[[QuartTrio], None] | None = None
    actors: Callable[
        [Holder[Database], Settings], Sequence[tuple[str | None, ActorSpec[Any, Any]]]
    ] = lambda database, settings: ()
    wrap: Callable[[ASGIApp], ASGIApp] | None = None


def build_tree(
    settings: Settings,
    lifecycle: Lifecycle,
    *,
    bind: str,
    extensions: Sequence[Extension] = (),
) -> SupervisorSpec:
    database: Holder[Database] = Holder("postgres")
    cache: Holder[Cache] = Holder("redis")
    cleanup_s = settings.cleanup_timeout_s
    policy = settings.jobs  # JobSettings is a QueuePolicy

    def queue() -> JobQueue:
        return RedisJobQueue(cache.value, prefix="jobs", default=policy)

    handlers: dict[str, ActorRef[RunJob, Any]] = {}
    alerts = DeadLetterAlerts(
        settings.jobs.alert_webhook_url, timeout_s=settings.jobs.alert_timeout_s
    )
    notifications = notification_tree(settings, database, alerts)
    handlers.update(notifications.handlers)
    extra_actors: list[ChildSpec] = []
    for extension in extensions:
        for kind, spec in extension.actors(database, settings):
            if kind is not None:
                handlers[kind] = spec.ref
            extra_actors.append(spec)

    # The booking domain's two Protocols, on the resources of the moment. Every
    # change this process applies is forgotten by its availability memory at once.
    availability_memory = AvailabilityMemory(settings.booking.availability_memory_s)

    def store() -> BookingStore:
        return PostgresBookingStore(database.value)

    def booking_cache() -> BookingCache:
        return RedisBookingCache(cache.value, applied=availability_memory.changed)

    commerce = commerce_actors(settings, database)
    if commerce is not None:
        handlers[RECONCILE_KIND] = commerce.reconciler.ref

    roster = RosterSource(store, booking_cache, refresh_s=settings.booking.schedule_refresh_s)
    snapshots = Snapshots(settings.catalogue_memory_s)
    catalogue = catalogue_spec(
        lambda: PostgresShowrooms(database.value),
        settings.runtime,
        # Bulkhead: more handlers than can ever wait on Postgres, so a cached read
        # always has one, however slow Postgres is.
        concurrency=settings.database.most_waiting + settings.database.pool_max_size,
        breaker=database_breaker(settings),
        availability=lambda: Availability(
            store(), booking_cache(), roster, settings.booking, memory=availability_memory
        ),
        products=lambda: ProductCatalogue(
            PostgresProducts(database.value), RedisProductCache(cache.value), settings.products
        ),
        snapshots=snapshots,
    )
    booker: ActorSpec[Any, Any] = ActorSpec(
        "slot-booker",
        lambda: SlotBooker(store(), booking_cache(), queue(), roster, settings.booking),
        mailbox=booker_mailbox(settings.booking, settings.runtime),
        breaker=database_breaker(settings),
        shutdown_s=settings.runtime.child_shutdown_s,
    )
    replayer: ActorSpec[Any, Any] = ActorSpec(
        "booking-replayer",
        lambda: BookingReplayer(store(), booking_cache(), roster, settings.booking),
        mailbox=replayer_mailbox(
            settings.booking,
            settings.runtime,
            concurrency=settings.jobs.concurrency,
            database_call_s=settings.database.call_timeout_s,
            redis_call_s=settings.redis.operation_timeout_s,
        ),
        shutdown_s=settings.runtime.child_shutdown_s,
    )
    handlers[REPLAY_KIND] = replayer.ref
    # Reads apart from the writer: their own mailbox (bulkhead), no breaker (a read
    # that fails is no booking that failed; the reconnect gates answer a dead store).
    # At most a third of the pool, so a flood of lookups leaves connections to writes.
    reader: ActorSpec[Any, Any] = ActorSpec(
        "booking-reader",
        lambda: BookingReader(store(), booking_cache()),
        mailbox=dataclasses.replace(
            settings.runtime.mailbox, concurrency=max(1, settings.database.pool_max_size // 3)
        ),
        shutdown_s=settings.runtime.child_shutdown_s,
    )

    accounts = account_actors(settings, database, cache, database_breaker(settings))
    # While it is not running, the availability memory keeps nothing.
    availability_changes = TaskSpec(
        "availability-changes",
        lambda: Forever(partial(booking_cache().follow_changes, availability_memory)),
        shutdown_s=settings.runtime.child_shutdown_s,
    )

    domain_children: list[ChildSpec] = [
        catalogue,
        booker,
        reader,
        replayer,
        availability_changes,
        *accounts.specs,
        *(commerce.specs if commerce is not None else []),
        *notifications.actors,
        *extra_actors,
    ]

    def app() -> ASGIApp:
        guard = AccountGuard(
            settings.auth, cache.value, tokens=accounts.tokens, memory=accounts.memory
        )
        registry, objects = registries()
        actors = [child.ref for child in domain_children if isinstance(child, ActorSpec)]
        metrics = service_metrics(
            registry,
            objects,
            settings,
            actors,
            database.value,
            cache.value,
            queue(),
            guard,
        )
        readiness = database_readiness(database.value, settings.health, [booker.ref, catalogue.ref])
        quart = create_app(
            Services(
                settings=settings,
                database=database.value,
                cache=cache.value,
                catalogue=catalogue.ref,
                lifecycle=lifecycle,
                jobs=queue(),
                booker=booker.ref,
                reader=reader.ref,
                orders=commerce.orders.ref if commerce is not None else None,
                accounts=accounts.accounts.ref,
                sessions=accounts.sessions.ref,
                guard=guard,
                metrics=metrics,
                actors=actors,
                readiness=readiness,
                extra_routes=[e.routes for e in extensions if e.routes is not None],
            )
        )
        fast = FastRoutes(
            quart,
            booker.ref,
            lifecycle,
            guard,
            max_body_bytes=settings.max_body_bytes,
            retry_after_s=settings.unavailable_retry_after_s,
            body_timeout_s=settings.http.body_timeout_s,
            snapshots=snapshots,
            reads={
                "/v1/showrooms": FastRead(SHOWROOMS, showrooms_view, ListShowrooms),
                "/v1/products": FastRead(
                    PRODUCTS, products_view, ListProducts, cache_headers(settings.products)
                ),
            },
            catalogue=catalogue.ref,
            readiness=readiness,
            booking=settings.booking,
        )
        # The budget outside the edge: the edge's waits for a body (reading it,
        # draining it behind an early answer) are body time, not the handler's.
        edge = EdgeGuard(
            fast,
            max_body_bytes=settings.max_body_bytes,
            body_timeout_s=settings.http.body_timeout_s,
        )
        budget = RequestBudget(
            edge,
            timeout_s=settings.http.request_timeout_s,
            retry_after_s=settings.unavailable_retry_after_s,
            lifecycle=lifecycle,
        )
        cors = Cors(
            budget, origins=settings.http.cors_origins, max_age_s=settings.http.cors_max_age_s
        )
        outer: ASGIApp = HttpMetrics(cors, objects)  # every answer is counted
        for extension in extensions:
            if extension.wrap is not None:
                outer = extension.wrap(outer)
        return outer

    domain = SupervisorSpec(
        "domain",
        domain_children,
        strategy=Strategy.ONE_FOR_ONE,
        restarts=settings.runtime.restart,
    )
    return SupervisorSpec(
        "root",
        [
            TaskSpec(
                "postgres",
                lambda: Resource(
                    lambda: open_database(
                        settings.database, application=settings.service, cleanup_s=cleanup_s
                    ),
                    database,
                ),
                shutdown_s=cleanup_s,
            ),
            TaskSpec(
                "redis",
                lambda: Resource(lambda: open_redis(settings.redis, cleanup_s=cleanup_s), cache),
                shutdown_s=cleanup_s,
            ),
            *([commerce.resource(settings, cleanup_s=cleanup_s)] if commerce is not None else []),
            *notifications.resources,
            domain,
            jobs_tree(settings, database, queue, handlers, alerts),
            TaskSpec(
                "http",
                lambda: HttpServer(app, settings, bind),
                restart=Restart.PERMANENT,
                shutdown_s=settings.drain_timeout_s + cleanup_s,
            ),
        ],
        strategy=Strategy.REST_FOR_ONE,
        restarts=settings.runtime.restart,
    )
