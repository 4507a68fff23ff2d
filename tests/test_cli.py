"""The ``lomash`` command as an operator meets it: what each command prints and its
exit status; ``make run``'s announcement and ``.data/env``; a SIGKILLed serve leaves
no embedded server behind."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio_asyncio

from adapters import open_redis
from config import DatabaseSettings, QueuePolicy, RedisSettings, Settings, StripeSettings
from jobs import RedisJobQueue
from service._cli_ops import announce, forget_env_file
from tests._booking import eventually
from tests.conftest import CLOSED_PORT, fetch
from tests.test_process import BOUND_S, REPO, environment, service

__all__ = ["environment"]  # the fixture, used by name below

LOCATION_VARIABLES = ("LOMASH_REDIS_URL", "LOMASH_DATABASE_URL", "LOMASH_DATA_DIR")


def lomash(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in LOCATION_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "service", *arguments],
        cwd=REPO,
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )


def test_migrate_check_says_what_it_checked(tmp_path: Path) -> None:
    done = lomash({"LOMASH_DATA_DIR": str(tmp_path)}, "migrate", "check")
    assert done.returncode == 0, done.stderr
    labels = sorted(p.name.removesuffix(".up.sql") for p in (REPO / "migrations").glob("*.up.sql"))
    assert len(labels) >= 12  # through 0012_drop_partial_customer_lookups
    assert f"checked {len(labels)} migrations ({labels[0]} .. {labels[-1]})" in done.stdout
    assert "every up file additive" in done.stdout
    assert done.stdout.strip().endswith("ok: no violations")


def test_config_shows_the_values_in_effect_their_source_and_masks_secrets(
    tmp_path: Path,
) -> None:
    environment = {
        "LOMASH_DATA_DIR": str(tmp_path),
        "LOMASH_PORT": "9000",
        "LOMASH_ADMIN_TOKEN": "a-very-secret-admin-token",
        "LOMASH_DATABASE_URL": "postgresql://shop:hunter2@db.internal:5432/lomash",
        "LOMASH_STRIPE_SECRET_KEY": "sk_live_do_not_show",
    }
    done = lomash(environment, "config")
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert done.returncode == 0
    assert lines["LOMASH_PORT"].split("=", 1)[1].strip() == "9000  (environment)"
    assert lines["LOMASH_HOST"].endswith("= 127.0.0.1  (default)")
    assert lines["LOMASH_ADMIN_TOKEN"].endswith("= ****  (environment)")
    assert "postgresql://shop:****@db.internal:5432/lomash" in lines["LOMASH_DATABASE_URL"]
    assert lines["LOMASH_STRIPE_SECRET_KEY"].endswith("= ****  (environment)")
    assert "hunter2" not in done.stdout
    assert "do_not_show" not in done.stdout
    assert "a-very-secret" not in done.stdout


def test_config_errors_point_at_the_lomash_command(tmp_path: Path) -> None:
    done = lomash({"LOMASH_DATA_DIR": str(tmp_path), "LOMASH_PROT": "1"}, "config")
    assert done.returncode == 2
    assert "LOMASH_PROT: unknown setting (see `lomash config`)" in done.stderr
    assert "python -m" not in done.stderr


async def test_dlq_list_covers_every_queue_and_says_when_empty_or_unknown(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    prefix = f"{redis_prefix}{secrets.token_hex(4)}:"
    environment = {
        "LOMASH_DATA_DIR": str(tmp_path),
        "LOMASH_REDIS_URL": redis_url,
        "LOMASH_REDIS_PREFIX": prefix,
    }
    settings = RedisSettings(url=redis_url, prefix=prefix)
    async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=1.0) as cache:
        queue = RedisJobQueue(cache, prefix="jobs", default=QueuePolicy(attempts=1))
        await queue.enqueue("notifications", "notify.email", {"to": "x"}, job_id="dead-1")
        [lease] = await queue.lease("notifications", worker="t", limit=1, wait_s=BOUND_S)
        await queue.fail(lease, error_type="UpstreamError", error_message="SES said 503")
        every = await trio.to_thread.run_sync(lomash, environment, "dlq", "list")
        empty = await trio.to_thread.run_sync(lomash, environment, "dlq", "list", "bookings")
        one = await trio.to_thread.run_sync(lomash, environment, "dlq", "list", "notifications")
        unknown = await trio.to_thread.run_sync(lomash, environment, "dlq", "list", "nosuch")
        no_queue = await trio.to_thread.run_sync(lomash, environment, "dlq", "show")
    assert every.returncode == 0
    assert [line.split() for line in every.stdout.splitlines()] == [
        ["bookings", "no", "dead", "jobs"],
        ["payments", "no", "dead", "jobs"],
        ["notifications", "1", "dead"],
    ]
    assert (empty.returncode, empty.stdout.strip()) == (0, "no dead jobs in 'bookings'")
    assert "dead-1  notify.email" in one.stdout
    assert unknown.returncode == 2
    assert "unknown queue 'nosuch': the service's queues are bookings, payments" in (unknown.stderr)
    assert no_queue.returncode == 2
    assert "lomash dlq show needs a QUEUE" in no_queue.stderr


async def test_the_commands_use_make_runs_servers_from_the_env_file(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """No URL set, a ``.data/env`` written by make run: dlq list reaches its Redis
    (and says so); without the file, a clear configuration error."""
    (tmp_path / "env").write_text(f"# written by make run\nLOMASH_REDIS_URL={redis_url}\n")
    environment = {"LOMASH_DATA_DIR": str(tmp_path), "LOMASH_REDIS_PREFIX": redis_prefix}
    found = await trio.to_thread.run_sync(lomash, environment, "dlq", "list")
    (tmp_path / "env").unlink()
    missing = await trio.to_thread.run_sync(lomash, environment, "dlq", "list")
    assert found.returncode == 0, found.stderr
    assert "using the servers of make run" in found.stderr
    assert "bookings" in found.stdout
    assert missing.returncode == 2
    assert "LOMASH_REDIS_URL is not set" in missing.stderr


def test_make_run_announces_where_everything_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        admin_token="dev-token",
        database=DatabaseSettings(url="postgresql://postgres:postgres@127.0.0.1:5999/lomash"),
        redis=RedisSettings(url="redis://127.0.0.1:6999/0"),
        stripe=StripeSettings(secret_key="sk_test_x", api_base="http://127.0.0.1:7999"),
    )
    announce(settings, tmp_path, ["http://127.0.0.1:8123"])
    shown = capsys.readouterr().out
    written = (tmp_path / "env").read_text()
    forget_env_file(tmp_path)
    assert shown.splitlines()[0] == "Lomash Wood is serving on http://127.0.0.1:8123"
    assert "http://127.0.0.1:8123/health" in shown
    assert "http://127.0.0.1:8123/docs" in shown
    assert "http://127.0.0.1:8123/openapi.json" in shown
    assert "http://127.0.0.1:8123/metrics" in shown
    assert "http://127.0.0.1:8123/ops   (admin token dev-token" in shown
    assert "postgresql://postgres:postgres@127.0.0.1:5999/lomash" in shown
    assert "redis://127.0.0.1:6999/0" in shown
    assert "http://127.0.0.1:7999" in shown
    assert "LOMASH_DATABASE_URL=postgresql://postgres:postgres@127.0.0.1:5999/lomash" in written
    assert "LOMASH_REDIS_URL=redis://127.0.0.1:6999/0" in written
    assert not (tmp_path / "env").exists()


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return "redis-server" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
async def test_a_killed_serve_leaves_no_embedded_redis_and_the_next_start_serves(
    migrated_url: str, tmp_path: Path
) -> None:
    """``lomash serve`` with no Redis URL starts an embedded Redis; SIGKILL the
    service: the Redis goes with it (nothing left holding memory and a port), and the
    next start on the same data folder serves."""
    environment = {
        "LOMASH_DATABASE_URL": migrated_url,
        "LOMASH_DATA_DIR": str(tmp_path),
        "LOMASH_JOBS_QUEUES": "",
    }
    clean = {k: "" for k in ("LOMASH_REDIS_URL",) if k in os.environ}
    async with service({**environment, **clean}, test_routes=False) as running:
        redis_children = {pid for pid in _children(running.process.pid) if _alive(pid)}
        running.process.send_signal(signal.SIGKILL)
        await running.process.wait()

        async def gone() -> bool:
            return not any(_alive(pid) for pid in redis_children)

        await eventually(gone, within_s=BOUND_S, every_s=0.05)
    async with service({**environment, **clean}, test_routes=False) as again:
        assert again.url.startswith("http://")
    assert len(redis_children) == 1


def _healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK, in its exec form."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    [line] = [line for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return command


async def test_the_image_healthcheck_asks_the_configured_port(
    environment: dict[str, str],
) -> None:
    """The HEALTHCHECK command, run as Docker would with the task's LOMASH_PORT: 0
    against the serving port, non-zero against another one."""
    command = _healthcheck_command()
    async with service(environment, test_routes=False) as running:
        port = running.url.rsplit(":", 1)[1].rstrip("/")

        def probe(at: str) -> int:
            env = {**os.environ, "LOMASH_PORT": at}
            return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode

        serving = await trio.to_thread.run_sync(probe, port)
        elsewhere = await trio.to_thread.run_sync(probe, str(CLOSED_PORT))
    assert (serving, elsewhere != 0) == (0, True)


def test_the_image_gets_every_package_and_no_local_state() -> None:
    """Every package pyproject ships is copied into the image; the build context
    leaves out environments, data and caches."""
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = pyproject.split("[tool.setuptools.packages.find]", 1)[1].split("]", 1)[0]
    shipped = {name.strip(' "*\n') for name in packages.split("[", 1)[1].split(",")}
    assert shipped - {""} <= copied
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", ".data", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"} <= ignored


async def test_smoke_passes_against_a_serving_deployment_and_fails_clearly_otherwise(
    fresh_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """`lomash smoke URL`: every check against a real `lomash serve` (the demo's Leeds
    showroom as the test showroom): exit 0, the booking it made cancelled; nothing
    listening, or no such test showroom: exit 1 naming the check."""
    environment = {
        "LOMASH_DATABASE_URL": fresh_database_url,
        "LOMASH_REDIS_URL": redis_url,
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}{secrets.token_hex(4)}:",
        "LOMASH_JOBS_QUEUES": "",
    }
    async with service(environment, "--migrate", "--seed", test_routes=False) as running:
        passed = await trio.to_thread.run_sync(
            lomash, {}, "smoke", running.url, "--showroom", "leeds"
        )
        no_showroom = await trio.to_thread.run_sync(lomash, {}, "smoke", running.url)
    nothing = await trio.to_thread.run_sync(
        lomash, {}, "smoke", f"http://127.0.0.1:{CLOSED_PORT}", "--within", "5"
    )
    async with trio_asyncio.open_loop():
        rows = await fetch(fresh_database_url, "SELECT status, notes FROM appointments")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    checks = [line.split()[1] for line in passed.stdout.splitlines() if line.startswith("ok")]
    assert checks == [
        "alive",
        "healthy",
        "ready",
        "showrooms",
        "products",
        "availability",
        "booking",
        "cancellation",
        "metrics",
    ]
    assert passed.stdout.strip().endswith("smoke test passed")
    assert [tuple(r) for r in rows] == [("CANCELLED", "smoke test: cancelled at once")]
    assert no_showroom.returncode == 1
    assert "showrooms: no test showroom 'smoke-test'" in no_showroom.stderr
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("FAILED  alive: GET /health/live: ConnectError")
