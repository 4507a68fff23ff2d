"""The HTTP face: /health in the spec's format, request ids, errors as stable JSON."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
import trio
import trio_asyncio

from chaos import open_proxy
from config import Settings
from tests._booking import eventually
from tests._service import running_service, service_settings, with_database_url, with_redis_url
from tests.conftest import NO_REDIS_URL, port_of
from tests.test_postgres import via

BOUND_S = 20.0


@pytest.fixture
def settings(migrated_url: str, redis_url: str, redis_prefix: str) -> Settings:
    return service_settings(migrated_url, redis_url, redis_prefix)


async def test_health_is_healthy_when_both_dependencies_answer(settings: Settings) -> None:
    """200 healthy with exactly the spec's fields."""
    async with trio_asyncio.open_loop(), running_service(settings) as (app, _):
        with trio.fail_after(BOUND_S):
            response = await app.test_client().get("/health")
            body = await response.get_json()
    assert response.status_code == 200
    assert set(body) == {"status", "timestamp", "service", "version", "checks"}
    assert body["status"] == "healthy"
    assert body["checks"] == {"database": "ok", "redis": "ok"}
    assert (body["service"], body["version"]) == ("lomash-backend", "0.1.0")
    assert body["timestamp"].endswith("Z")
    datetime.fromisoformat(body["timestamp"])


async def test_health_is_unhealthy_503_when_the_database_is_down(
    settings: Settings, migrated_url: str
) -> None:
    """Database refused: 503 unhealthy, the check says why; Redis still reported ok."""
    async with trio_asyncio.open_loop(), open_proxy(port_of(migrated_url)) as proxy:
        down = with_database_url(settings, via(proxy, migrated_url))
        async with running_service(down) as (app, _):
            proxy.reset()
            with trio.fail_after(BOUND_S):
                response = await app.test_client().get("/health")
                body = await response.get_json()
    assert response.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"].startswith("error: ")
    assert body["checks"]["redis"] == "ok"


async def test_a_silent_database_is_reported_within_the_check_deadline(
    settings: Settings, migrated_url: str
) -> None:
    """Blackholed database: /health still answers in time, saying it had no answer."""
    async with trio_asyncio.open_loop(), open_proxy(port_of(migrated_url)) as proxy:
        down = with_database_url(settings, via(proxy, migrated_url))
        async with running_service(down) as (app, _):
            proxy.blackhole()
            with trio.fail_after(settings.health.database_timeout_s * 4):
                response = await app.test_client().get("/health")
                body = await response.get_json()
    assert response.status_code == 503
    assert body["checks"]["database"] == "error: no answer within 0.5 s"


async def test_health_is_degraded_200_when_only_redis_is_down(settings: Settings) -> None:
    """The service runs without Redis: 200 degraded, the redis check says why."""
    no_redis = with_redis_url(settings, NO_REDIS_URL)
    async with trio_asyncio.open_loop(), running_service(no_redis) as (app, _):
        with trio.fail_after(BOUND_S):
            response = await app.test_client().get("/health")
            body = await response.get_json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "redis": "error: connection refused"}


async def test_liveness_needs_nothing_and_readiness_follows_draining_and_the_database(
    settings: Settings, migrated_url: str
) -> None:
    """/health/live is 200 with everything down; /health/ready is 503 while draining, and
    once the database is down within LOMASH_HEALTH_READY_MEMORY_S (plus the check's
    own deadline)."""
    async with trio_asyncio.open_loop(), open_proxy(port_of(migrated_url)) as proxy:
        down = with_database_url(settings, via(proxy, migrated_url))
        async with running_service(down) as (app, services):
            client = app.test_client()
            with trio.fail_after(BOUND_S):
                assert (await client.get("/health/ready")).status_code == 200
                services.lifecycle.draining = True
                draining = await client.get("/health/ready")
                assert draining.status_code == 503
                assert (await draining.get_json())["status"] == "draining"
                services.lifecycle.draining = False
                proxy.reset()
                health = settings.health

                async def unready() -> bool:
                    return bool((await client.get("/health/ready")).status_code == 503)

                bound_s = health.ready_memory_s + health.database_timeout_s + 1
                await eventually(unready, within_s=bound_s, every_s=0.05)
                assert (await client.get("/health/live")).status_code == 200


async def test_the_service_recovers_from_a_database_outage_without_a_restart(
    settings: Settings, migrated_url: str
) -> None:
    """Outage -> 503 with Retry-After; database back -> served again within the window."""
    async with trio_asyncio.open_loop(), open_proxy(port_of(migrated_url)) as proxy:
        via_proxy = with_database_url(settings, via(proxy, migrated_url))
        async with running_service(via_proxy) as (app, _):
            client = app.test_client()
            with trio.fail_after(settings.database.reconnect_window_s):
                assert (await client.get("/v1/showrooms")).status_code == 200
                proxy.reset()
                failed = await client.get("/v1/showrooms")
                assert failed.status_code == 503
                assert int(failed.headers["Retry-After"]) >= 1
                error = (await failed.get_json())["error"]
                assert error["code"] in {"dependency_unavailable", "circuit_open"}
                proxy.forward()
                while True:  # a client honouring Retry-After, faster
                    if (await client.get("/v1/showrooms")).status_code == 200:
                        break
                    await trio.sleep(0.05)
                assert (await client.get("/health")).status_code == 200


async def test_every_response_carries_a_request_id(settings: Settings) -> None:
    """A valid X-Request-ID is echoed; a missing or hostile one is replaced."""
    async with trio_asyncio.open_loop(), running_service(settings) as (app, _):
        client = app.test_client()
        given = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
        made = await client.get("/health/live")
        hostile = await client.get("/health/live", headers={"X-Request-ID": 'a" b<script>'})
    assert given.headers["X-Request-ID"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "field"),
    [
        ("GET", "/nope", {}, 404, "not_found", None),
        ("DELETE", "/health", {}, 405, "method_not_allowed", None),
        (
            "POST",
            "/_test/echo",
            {"data": "{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed_json",
            None,
        ),
        ("POST", "/_test/echo", {"data": "name=x"}, 415, "unsupported_media_type", None),
        (
            "POST",
            "/_test/echo",
            {"json": {"name": "x", "count": "3", "contact": {"email": "e"}}},
            422,
            "invalid_field",
            "count",
        ),
        (
            "POST",
            "/_test/echo",
            {"json": {"name": "x", "count": 3, "contact": {}}},
            422,
            "invalid_field",
            "contact.email",
        ),
        (
            "POST",
            "/_test/echo",
            {"json": {"name": "x", "count": 3}},
            422,
            "invalid_field",
            "contact",
        ),
        (
            "POST",
            "/_test/echo",
            {"json": {"name": "x" * 2000, "count": 3, "contact": {"email": "e"}}},
            413,
            "payload_too_large",
            None,
        ),
        ("GET", "/_test/sleep?seconds=soon", {}, 422, "invalid_field", "seconds"),
        ("GET", "/_test/crash", {}, 500, "internal_error", None),
    ],
)
async def test_bad_requests_get_a_clear_4xx_with_a_stable_code(
    settings: Settings,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: str,
    field: str | None,
) -> None:
    """Every error is JSON with a stable code, the field when there is one, no traceback."""
    async with trio_asyncio.open_loop(), running_service(settings) as (app, _):
        response = await app.test_client().open(path, method=method, **kwargs)  # type: ignore[arg-type]
        text = await response.get_data(as_text=True)
        body = await response.get_json()
    assert response.status_code == status
    assert body["error"]["code"] == code
    assert body["error"].get("field") == field
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in text
    assert "hunter2" not in text


async def test_a_valid_body_is_accepted(settings: Settings) -> None:
    """The typed decoder passes a correct body through."""
    payload = {"name": "x", "count": 3, "contact": {"email": "e@example.com"}}
    async with trio_asyncio.open_loop(), running_service(settings) as (app, _):
        response = await app.test_client().post("/_test/echo", json=payload)
        assert response.status_code == 200
        assert await response.get_json() == payload
