"""Blue/green rollback: the release before a migration still works on the schema after it.

A deploy runs the new release's migrations before its tasks take traffic; a failed
canary sends traffic back to the previous task definition, whose code then runs on
the new schema (README, "Rollback runbook"). So every migration must leave the old
code working. ``tests/test_migration_policy.py`` lints the up files for destructive
statements; these tests run the old code itself, taken from git history:

- the newest migration: the tree of the commit before the one that added it (the
  release a rollback goes back to) is exported into a temporary directory; a fresh
  database gets every current migration (applied by the current code), then the old
  tree's ``migrate up`` must apply nothing and exit 0, its ``migrate down`` must
  refuse (the newest down file is only in the new release), and its ``serve --seed``
  is started as a process (its own modules, same interpreter) and must start (no
  refusal of a schema newer than it knows), pass the current canary smoke test
  (``lomash smoke``) and book, read back and cancel an appointment and place and read
  back an order (Stripe: the local one);
- every earlier migration M in order: the code before M was added, on the schema as
  of M (the current files up to M), must start and answer the routes it has (probed
  from its own sources: health, showrooms, products, a booking, an order, metrics).

The lint cannot see everything: ``ADD COLUMN c TEXT NOT NULL`` (no default) is
additive to it, yet every INSERT of the old code then fails; these tests fail on it.
History comes from git: on a shallow clone (no history) these are skipped. About 20 s.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from adapters import Migration, load_migrations, migrate_up
from tests.conftest import fetch
from tests.test_process import BOUND_S, REPO, Service, service

MIGRATIONS = load_migrations()
NEWEST = MIGRATIONS[-1]
SHOWROOM = "leeds"  # in the demo seed of every release that has one
CUSTOMER = {
    "name": "Rollback Test",
    "email": "rollback-test@lomashwood.invalid",
    "phone": "+44 7700 900001",
    "postcode": "LS1 6HD",
}
BOOKING = ("GET", "/v1/appointments/availability")
_ROUTE = re.compile(r"""@app\.(get|post)\(\s*["']([^"']+)["']""")


def _git(*arguments: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *arguments], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(arguments)}: {done.stderr.strip()}")
    return done.stdout


def _no_history() -> str | None:
    """Why the history cannot be used (None: it can)."""
    try:
        shallow = _git("rev-parse", "--is-shallow-repository").strip()
    except (OSError, RuntimeError) as error:
        return f"no git history here ({error})"
    if shallow != "false":
        return "shallow clone: no history to take the previous release from (git fetch --unshallow)"
    return None


def _before(label: str) -> str:
    """The commit before the one that added ``migrations/<label>.up.sql`` (the oldest
    such, if re-added); HEAD while the migration is not committed yet."""
    added = _git("log", "--diff-filter=A", "--format=%H", "--", f"migrations/{label}.up.sql")
    commits = added.split()
    return _git("rev-parse", f"{commits[-1]}^" if commits else "HEAD").strip()


def _export(commit: str, destination: Path) -> Path:
    """The tree of ``commit`` written into ``destination`` (``git archive``)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    destination.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return destination


def _module(tree: Path) -> str | None:
    """The package a tree's ``lomash`` command runs as (None: the tree has no service)."""
    for module in ("service", "gateway"):  # `python -m gateway` before service/ existed
        if (tree / module / "__main__.py").is_file():
            return module
    return None


def _routes(tree: Path) -> set[tuple[str, str]]:
    """(METHOD, path) of every route a tree's HTTP layer declares. Booking itself
    (POST /v1/appointments) is the fast ASGI route (gateway/_fast.py), declared
    nowhere: it came with the appointment routes, so availability stands for it."""
    return {
        (method.upper(), path)
        for source in (tree / "gateway").glob("*.py")
        for method, path in _ROUTE.findall(source.read_text())
    }


def _child_environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without its LOMASH_* (old code refuses names it does
    not know), plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOMASH_")}
    return {**clean, **extra}


@asynccontextmanager
async def old_service(
    tree: Path, environment: dict[str, str], *arguments: str
) -> AsyncIterator[Service]:
    """The ``serve`` command of an exported tree as a process: cwd and PYTHONPATH are
    the tree, so its own modules are imported, not the current ones (the editable
    install's finder comes after both). Ready when it logs ``http_listening``."""
    module = _module(tree)
    assert module is not None
    imported = await trio.to_thread.run_sync(_imported_from, tree, environment)
    assert imported
    assert all(Path(path).is_relative_to(tree) for path in imported), imported
    async with service(environment, *arguments, tree=tree, module=module) as running:
        yield running


def _old_command(
    tree: Path, environment: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    """``python -m ARGUMENTS`` run from an exported tree, with its modules first."""
    return subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=tree,
        env=_child_environment({**environment, "PYTHONPATH": str(tree)}),
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )


def _imported_from(tree: Path, environment: dict[str, str]) -> list[str]:
    """Where a tree's processes import their own packages from."""
    packages = [p for p in ("service", "gateway", "adapters", "config") if (tree / p).is_dir()]
    code = (
        "import importlib, sys\nfor p in sys.argv[1:]: print(importlib.import_module(p).__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *packages],
        cwd=tree,
        env=_child_environment({**environment, "PYTHONPATH": str(tree)}),
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=True,
    )
    return done.stdout.split()


async def _schema(url: str, target: int) -> None:
    async with trio_asyncio.open_loop():
        applied = await migrate_up(url, target=target)
    assert [m.version for m in applied] == list(range(1, target + 1))


async def _ok(client: httpx.AsyncClient, method: str, path: str, **options: Any) -> Any:
    answer = await client.request(method, path, **options)
    assert answer.status_code in (200, 201), f"{method} {path}: {answer.status_code} {answer.text}"
    return (
        answer.json()
        if answer.headers.get("content-type", "").startswith("application/json")
        else answer.text
    )


async def _probe(
    url: str, routes: set[tuple[str, str]], *, seeded: bool, orders: bool
) -> list[str]:
    """Every route of the old code's that this knows how to call, called as a client
    would; the names of those done."""
    done = []
    async with httpx.AsyncClient(base_url=url, timeout=BOUND_S) as client:
        for path in ("/health/live", "/health/ready"):
            await _ok(client, "GET", path)
            done.append(path)
        showrooms = await _ok(client, "GET", "/v1/showrooms")
        if seeded:
            assert SHOWROOM in {s["id"] for s in showrooms["showrooms"]}
        done.append("showrooms")
        if ("GET", "/v1/products") in routes:
            products = await _ok(client, "GET", "/v1/products")
            assert not seeded or products["products"]
            done.append("products")
        if seeded and BOOKING in routes:
            await _booking(client)
            done.append("booking")
        if orders and ("POST", "/v1/orders") in routes:
            await _order(client)
            done.append("order")
        if ("GET", "/metrics") in routes:
            metrics = await _ok(client, "GET", "/metrics")
            assert "lomash_http_requests_total" in metrics
            done.append("metrics")
    return done


async def _booking(client: httpx.AsyncClient) -> None:
    """Book the first free slot, read it back with its manage token, cancel it."""
    availability = await _ok(
        client,
        "GET",
        "/v1/appointments/availability",
        params={"type": "SHOWROOM", "showroom_id": SHOWROOM, "category": "KITCHEN"},
    )
    slot = availability["slots"][0]
    body = {
        "type": "SHOWROOM",
        "category": "KITCHEN",
        "start": slot["start"],
        "showroom_id": SHOWROOM,
        "consultant_id": slot["consultant_id"],
        "customer": CUSTOMER,
        "notes": "rollback test",
    }
    key = {"Idempotency-Key": f"rollback-{uuid.uuid4()}"}
    booked = await _ok(client, "POST", "/v1/appointments", json=body, headers=key)
    assert booked["status"] == "CONFIRMED", booked
    token = {"X-Manage-Token": booked["manage_token"]}
    shown = await _ok(client, "GET", f"/v1/appointments/{booked['id']}", headers=token)
    assert (shown["id"], shown["status"], shown["start"]) == (
        booked["id"],
        "CONFIRMED",
        slot["start"],
    )
    cancelled = await _ok(
        client,
        "POST",
        f"/v1/appointments/{booked['id']}/cancel",
        json={"reason": "rollback test"},
        headers=token,
    )
    assert cancelled["status"] == "CANCELLED"


async def _order(client: httpx.AsyncClient) -> None:
    """Place an order (paid with the local Stripe) and read it back with its token."""
    body = {
        "items": [{"product_id": "hartley-shaker-kitchen", "quantity": 1}],
        "customer": CUSTOMER,
    }
    key = {"Idempotency-Key": f"rollback-{uuid.uuid4()}"}
    placed = await _ok(client, "POST", "/v1/orders", json=body, headers=key)
    shown = await _ok(
        client,
        "GET",
        f"/v1/orders/{placed['id']}",
        headers={"X-Manage-Token": placed["manage_token"]},
    )
    assert shown["id"] == placed["id"]


@pytest.fixture
def before(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Migration, str, Path]:
    """(M, the commit before M was added, that commit's tree exported): M is the test's
    ``migration`` parameter (default: the newest). A sync fixture, so that a skip keeps
    its reason (pytest-trio loses it from an async test)."""
    migration: Migration = getattr(request, "param", NEWEST)
    reason = _no_history()
    if reason is not None:
        pytest.skip(reason)
    previous = _before(migration.label)
    tree = _export(previous, tmp_path / f"before-{migration.label}")
    if _module(tree) is None:
        pytest.skip(f"{previous[:8]}, before {migration.label}, has no service to roll back to")
    return migration, previous, tree


def _environment(
    url: str, redis_url: str, redis_prefix: str, stripe_url: str | None
) -> dict[str, str]:
    environment = {
        "LOMASH_DATABASE_URL": url,
        "LOMASH_REDIS_URL": redis_url,
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}{secrets.token_hex(4)}:",
    }
    if stripe_url is not None:  # only for a tree whose settings know Stripe
        environment |= {
            "LOMASH_STRIPE_SECRET_KEY": "sk_test_lomash",
            "LOMASH_STRIPE_API_BASE": stripe_url,
        }
    return environment


async def test_the_release_before_the_newest_migration_works_on_the_current_schema(
    before: tuple[Migration, str, Path],
    fresh_database_url: str,
    redis_url: str,
    redis_prefix: str,
    stripe_url: str,
) -> None:
    """The previous release (the commit before the newest migration was added) on a
    database with every current migration: its `migrate up` is a no-op and its
    `migrate down` refuses; it starts, the current canary smoke test passes against it,
    and a booking and an order made through it read back."""
    _, previous, tree = before
    assert not (tree / "migrations" / f"{NEWEST.label}.up.sql").exists()
    await _schema(fresh_database_url, NEWEST.version)
    environment = _environment(fresh_database_url, redis_url, redis_prefix, stripe_url)
    assert _module(tree) == "service"
    # Its own `migrate up` (were its one-off task run again) applies nothing and exits 0;
    # its `migrate down` refuses: the newest down file is only in the new release.
    up = await trio.to_thread.run_sync(_old_command, tree, environment, "service", "migrate", "up")
    down = await trio.to_thread.run_sync(
        _old_command, tree, environment, "service", "migrate", "down", "--steps", "1"
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert down.returncode == 1, down.stdout + down.stderr
    assert f"{NEWEST.label} was applied by newer code" in down.stderr
    async with old_service(tree, environment, "--seed") as running:
        smoke = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                [sys.executable, "-m", "service", "smoke", running.url, "--showroom", SHOWROOM],
                cwd=REPO,
                env=_child_environment({}),
                capture_output=True,
                text=True,
                timeout=BOUND_S,
                check=False,
            )
        )
        assert smoke.returncode == 0, f"{previous[:8]}: {smoke.stdout}{smoke.stderr}"
        done = await _probe(running.url, _routes(tree), seeded=True, orders=True)
    assert smoke.stdout.strip().endswith("smoke test passed")
    assert done == [
        "/health/live",
        "/health/ready",
        "showrooms",
        "products",
        "booking",
        "order",
        "metrics",
    ]
    assert not running.logs.named("migrations_ahead_of_code")  # it never ran migrations
    async with trio_asyncio.open_loop():
        rows = await fetch(
            fresh_database_url, "SELECT status, notes FROM appointments ORDER BY notes"
        )
        versions = await fetch(fresh_database_url, "SELECT version FROM schema_migrations")
    assert [tuple(r) for r in rows] == [
        ("CANCELLED", "rollback test"),
        ("CANCELLED", "smoke test: cancelled at once"),
    ]
    assert sorted(r["version"] for r in versions) == [m.version for m in MIGRATIONS]


@pytest.mark.parametrize("before", MIGRATIONS[:-1], ids=lambda m: m.label, indirect=True)
async def test_the_release_before_each_migration_works_on_the_schema_after_it(
    before: tuple[Migration, str, Path],
    fresh_database_url: str,
    redis_url: str,
    redis_prefix: str,
    stripe_url: str,
) -> None:
    """For each earlier migration M: the code of the commit before M was added, on the
    schema as of M, starts and answers every route of its own that the probe knows."""
    migration, previous, tree = before
    await _schema(fresh_database_url, migration.version)
    stripe = stripe_url if (tree / "config" / "_stripe.py").is_file() else None
    environment = _environment(fresh_database_url, redis_url, redis_prefix, stripe)
    seeded = (tree / "migrations" / "demo" / "seed.sql").is_file()
    routes = _routes(tree)
    async with old_service(tree, environment, *(["--seed"] if seeded else [])) as running:
        done = await _probe(running.url, routes, seeded=seeded, orders=stripe is not None)
    assert done[:3] == ["/health/live", "/health/ready", "showrooms"], previous
    assert ("booking" in done) == (seeded and BOOKING in routes)
