"""The process's supervision tree: resources, domain actors, the HTTP server.

    root (rest_for_one)
    ├── postgres   Resource: the pools (open_database)
    ├── redis      Resource: the client (open_redis)
    ├── domain     one_for_one: catalogue, ... (the domain actors)
    └── http       HttpServer: hypercorn on trio, stopped first on shutdown

rest_for_one: whatever depends on a resource started after it, so if a resource is
ever restarted, everything after it restarts with the new one (each reads the
current value from a ``Holder`` when it starts). Shutdown runs in reverse: the HTTP
server drains first, then the actors, then Redis and Postgres close.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import hypercorn.config
import hypercorn.trio
import structlog
import trio
from quart_trio import QuartTrio

from actors import catalogue_spec
from adapters import Cache, Database, PostgresShowrooms, open_database, open_redis
from config import BreakerSettings, Settings
from gateway._app import Lifecycle, Services, create_app
from supervisors import Restart, Strategy, SupervisorSpec, TaskSpec

__all__ = ["Holder", "HttpServer", "Resource", "build_tree", "database_breaker"]

log = structlog.get_logger("gateway")


class Holder[T]:
    """The current value of a resource, for whoever starts after it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._value: T | None = None

    @property
    def value(self) -> T:
        if self._value is None:
            raise RuntimeError(f"resource {self.name!r} is not open")
        return self._value

    def set(self, value: T | None) -> None:
        self._value = value


class Resource[T]:
    """A supervised child that holds an async context manager open until stopped."""

    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[T]], holder: Holder[T]):
        self._opener = opener
        self._holder = holder
        self._stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._opener() as value:
            self._holder.set(value)
            try:
                task_status.started(value)
                await self._stop.wait()
            finally:
                self._holder.set(None)

    def request_stop(self, *, final: bool) -> None:
        self._stop.set()


class HttpServer:
    """Hypercorn on trio. Stopping closes the listener, then in-flight requests finish
    within ``drain_timeout_s`` (hypercorn's graceful timeout) before the rest is cancelled."""

    def __init__(self, app_factory: Callable[[], QuartTrio], settings: Settings, bind: str):
        self._app_factory = app_factory
        self._settings = settings
        self._bind = bind
        self._stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        config = hypercorn.config.Config()
        config.bind = [self._bind]
        config.graceful_timeout = self._settings.drain_timeout_s
        config.accesslog = None  # the app logs one canonical line per request
        config.loglevel = "WARNING"  # our structlog lines say what hypercorn would
        app = self._app_factory()
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                partial(hypercorn.trio.serve, app, config, shutdown_trigger=self._stop.wait)
            )
            log.info("http_listening", urls=urls)
            task_status.started(urls)

    def request_stop(self, *, final: bool) -> None:
        self._stop.set()


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


def build_tree(settings: Settings, lifecycle: Lifecycle, *, bind: str) -> SupervisorSpec:
    database: Holder[Database] = Holder("postgres")
    cache: Holder[Cache] = Holder("redis")
    cleanup_s = settings.cleanup_timeout_s
    catalogue = catalogue_spec(
        lambda: PostgresShowrooms(database.value),
        settings.runtime,
        concurrency=settings.database.pool_max_size,
        breaker=database_breaker(settings),
    )

    def app() -> QuartTrio:
        return create_app(
            Services(
                settings=settings,
                database=database.value,
                cache=cache.value,
                catalogue=catalogue.ref,
                lifecycle=lifecycle,
            )
        )

    domain = SupervisorSpec(
        "domain", [catalogue], strategy=Strategy.ONE_FOR_ONE, restarts=settings.runtime.restart
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
            domain,
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
