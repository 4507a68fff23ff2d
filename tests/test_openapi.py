"""The OpenAPI document: it lists every route the app serves, it is valid 3.1, the
docs page and its files are served locally; and schemathesis, run against the
service as shipped, finds no 5xx and no answer that does not conform."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Any, cast

import httpx
import trio

from adapters import Database
from config import Settings, StripeSettings
from gateway._app import Lifecycle, Services, create_app
from gateway._openapi import OPERATIONS, openapi_document
from supervisors import ActorSpec
from tests._accounts import customer
from tests._caches import UntouchedCache
from tests.test_process import BOUND_S, environment, service

__all__ = ["environment"]  # the fixture, used by name below

# Served, but not the customers' API: the operator's routes (README: Metrics and
# alerts, the admin API) and the document and its page themselves.
OPERATORS = re.compile(r"^/(admin|metrics|ops|openapi\.json|docs)")


def served_routes() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route of the app with every domain configured
    (the actors are never asked: only routes are registered)."""

    def never() -> Any:
        raise AssertionError("listing routes starts no actor")

    def ref(name: str) -> Any:
        return ActorSpec(name, never).ref

    settings = Settings(
        admin_token="x" * 32,
        stripe=StripeSettings(secret_key="sk_test_x", webhook_secret="whsec_x"),
    )
    services = Services(
        settings=settings,
        database=cast(Database, object()),  # routes are registered, never called
        cache=UntouchedCache(),
        catalogue=ref("catalogue"),
        lifecycle=Lifecycle(),
        jobs=cast(Any, object()),
        booker=ref("slot-booker"),
        reader=ref("booking-reader"),
        orders=ref("orders"),
        accounts=ref("accounts"),
        sessions=ref("sessions"),
    )
    app = create_app(services)
    routes = {("POST", "/v1/appointments")}  # answered by gateway/_fast.py in front
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if rule.endpoint == "static" or OPERATORS.match(path):
            continue
        routes.update((m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS"))
    return routes


def test_the_document_lists_every_route_the_app_serves() -> None:
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert documented == served_routes()


def test_the_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate

    document = openapi_document(version="test")
    validate(document)
    post = document["paths"]["/v1/appointments"]["post"]
    assert {k: v for k, v in post["parameters"][0].items() if k in ("name", "in", "required")} == {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
    }
    assert set(post["responses"]["429"]["headers"]) == {
        "Retry-After",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "RateLimit-Policy",
    }
    assert "Retry-After" in post["responses"]["503"]["headers"]
    assert post["security"] == [{}, {"accessToken": []}]
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"code", "message", "request_id"}


async def test_docs_page_and_its_files_are_served_locally(environment: dict[str, str]) -> None:
    async with (
        service(environment, test_routes=False) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as client,
    ):
        page = await client.get("/docs")
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        files = [await client.get(src) for src in sources]
        document = await client.get("/openapi.json")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert sources
    assert all(src.startswith("/") for src in sources)  # nothing from elsewhere
    assert [f.status_code for f in files] == [200] * len(files)
    assert document.json()["openapi"] == "3.1.0"


async def test_schemathesis_finds_no_5xx_and_no_nonconforming_answer(
    environment: dict[str, str], stripe_url: str
) -> None:
    """Every operation, bounded examples each, against `lomash serve` as shipped (with
    Stripe configured, rate limits off so the fuzzing is not throttled)."""
    st = shutil.which("st", path=str(sys.prefix) + "/bin")
    assert st is not None, "schemathesis is a dev dependency (pyproject.toml)"
    shipped = {
        **environment,
        "LOMASH_STRIPE_SECRET_KEY": "sk_test_lomash",
        "LOMASH_STRIPE_WEBHOOK_SECRET": "whsec_lomash_test",
        "LOMASH_STRIPE_API_BASE": stripe_url,
        "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
    }
    checks = (
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,response_headers_conformance"
    )

    def schemathesis(url: str, *selection: str) -> subprocess.CompletedProcess[str]:
        command = [
            st, "run", f"{url}/openapi.json", *selection, "--checks", checks,
            "--max-examples", "12", "--seed", "1", "--request-timeout", "10",
            "--suppress-health-check", "all", "--no-color",
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    async with service(shipped, test_routes=False) as running:
        # A logged-in customer's token, so the account routes are fuzzed past their
        # 401; logout (which would end that session) runs on its own, anonymously.
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
            tokens = await customer(client, "fuzz@example.com")
        bearer = f"Authorization: Bearer {tokens['access_token']}"
        with trio.fail_after(BOUND_S * 6):
            logged_in = await trio.to_thread.run_sync(
                schemathesis, running.url, "--header", bearer, "--exclude-path", "/v1/auth/logout"
            )
            logout = await trio.to_thread.run_sync(
                schemathesis, running.url, "--include-path", "/v1/auth/logout"
            )
    for done in (logged_in, logout):
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Authentication failed" not in logged_in.stdout
