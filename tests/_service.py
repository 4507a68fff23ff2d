"""An in-process service for gateway tests: real adapters, real actors, the real app."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from quart_trio import QuartTrio

from actors import catalogue_spec
from adapters import PostgresShowrooms, open_database, open_redis
from config import (
    AuthSettings,
    DatabaseSettings,
    HealthSettings,
    RateLimitSettings,
    RedisSettings,
    Settings,
)
from gateway._app import Lifecycle, Services, create_app
from jobs import JobQueue
from service._tree import database_breaker
from supervisors import SupervisorSpec, open_supervisor
from tests._test_routes import register_test_routes


def service_settings(database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    """Settings for a test service: short timeouts, a small body limit, no rate limits
    (the tests of rate limits turn them on: tests/test_rate_limits.py)."""
    return Settings(
        max_body_bytes=1024,
        auth=AuthSettings(rate_limits=RateLimitSettings(enabled=False)),
        database=DatabaseSettings(
            url=database_url, connect_timeout_s=0.5, reconnect_min_s=0.05, reconnect_max_s=0.4
        ),
        redis=RedisSettings(
            url=redis_url, prefix=redis_prefix, reconnect_min_s=0.05, reconnect_max_s=0.4
        ),
        health=HealthSettings(database_timeout_s=0.5, redis_timeout_s=0.3),
    )


@asynccontextmanager
async def running_service(
    settings: Settings, jobs: JobQueue | None = None
) -> AsyncIterator[tuple[QuartTrio, Services]]:
    """The app wired to real adapters and a supervised catalogue actor."""
    async with (
        open_database(settings.database, application="tests", cleanup_s=2.0) as database,
        open_redis(settings.redis, cleanup_s=1.0) as cache,
    ):
        catalogue = catalogue_spec(
            lambda: PostgresShowrooms(database),
            settings.runtime,
            concurrency=4,
            breaker=database_breaker(settings),
        )
        async with open_supervisor(SupervisorSpec("test", [catalogue])):
            services = Services(
                settings=settings,
                database=database,
                cache=cache,
                catalogue=catalogue.ref,
                lifecycle=Lifecycle(),
                jobs=jobs,
                extra_routes=[register_test_routes],
            )
            yield create_app(services), services


def with_database_url(settings: Settings, url: str) -> Settings:
    return dataclasses.replace(settings, database=dataclasses.replace(settings.database, url=url))


def with_redis_url(settings: Settings, url: str) -> Settings:
    return dataclasses.replace(settings, redis=dataclasses.replace(settings.redis, url=url))
