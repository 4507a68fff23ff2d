"""The processes behind chaos/_clusters.py: finding the binaries, free ports, the
user Postgres runs as, a server process with its log, and tearing everything down.

Servers are started from the calling (trio) thread, not a worker thread, since the
parent-death signal that stops them if this process dies follows the thread that
forked.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

POSTGRES_USER = "postgres"
START_S = 30.0  # bound on a server's start (initdb, a base backup, readiness)
STOP_S = 5.0  # how long a stopped server gets to exit before it is SIGKILLed
POLL_S = 0.05
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ClusterError(RuntimeError):
    """A server did not start or did not reach the state asked for (the message says
    which, with the end of its log)."""


def find_postgres_bin() -> Path | None:
    """The folder of ``initdb`` / ``postgres`` / ``pg_basebackup`` / ``psql``: on PATH,
    else the newest /usr/lib/postgresql/<version>/bin; None if there is none."""
    needed = ("initdb", "postgres", "pg_basebackup", "psql")
    found = shutil.which("initdb")
    candidates = [Path(found).parent] if found else []
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in [*candidates, *versions]:
        if all((folder / name).is_file() for name in needed):
            return folder
    return None


def find_redis_server() -> str | None:
    """The ``redis-server`` binary (it is also the Sentinel), or None."""
    return shutil.which("redis-server")


async def _until(check: Callable[[], Awaitable[bool]], *, every_s: float = POLL_S) -> None:
    """Poll ``check`` until it holds (the caller bounds the wait)."""
    while True:
        if await check():
            return
        await trio.sleep(every_s)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _dies_with_parent(signum: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``signum`` when this process dies, however.

    The process is started from this (trio's) thread, not a worker thread: the
    parent-death signal follows the thread that forked."""
    parent = os.getpid()

    def arrange() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signum)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:
            os._exit(1)

    return arrange


@dataclass(frozen=True, slots=True)
class _User:
    """Whom the servers run as (None fields: as ourselves)."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_postgres(cls) -> _User:
        if os.geteuid() != 0:
            return cls()
        try:
            entry = pwd.getpwnam(POSTGRES_USER)
        except KeyError:
            raise ClusterError(
                f"Postgres refuses to run as root, and there is no {POSTGRES_USER!r} user"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid)

    def options(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def _reachable_by_others(path: Path) -> bool:
    return all(
        not folder.exists() or bool(folder.stat().st_mode & stat.S_IXOTH)
        for folder in [path, *path.parents]
    )


def _make_folder(parent: Path | None, prefix: str, user: _User) -> Path:
    base = Path(parent if parent is not None else tempfile.gettempdir()).absolute()
    if user.uid is not None and not _reachable_by_others(base):
        base = Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    user.own(folder)
    return folder


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class _Server:
    """One long-running server process we started (its own process group)."""

    def __init__(
        self, name: str, command: Sequence[str], log: Path, user: _User, death_signal: int
    ) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_dies_with_parent(death_signal),
                **user.options(),
            )

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    async def wait(self, timeout_s: float) -> bool:
        """Whether it exited within ``timeout_s``."""
        with trio.move_on_after(timeout_s):
            await _until(self._exited)
            return True
        return False

    async def _exited(self) -> bool:
        return self.popen.poll() is not None

    def send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL the server and whatever it forked (Postgres's backends)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.send(signal.SIGKILL)

    async def stop(self, signum: int, timeout_s: float = STOP_S) -> None:
        """``signum``, then SIGKILL for the group if it has not exited by ``timeout_s``."""
        if self.running:
            self.send(signum)
            await self.wait(timeout_s)
        self.kill_group()
        await self.wait(timeout_s)

    def failure(self, what: str) -> ClusterError:
        return ClusterError(f"{self.name}: {what}; its log ends:\n{_tail(self.log)}")


async def _run(command: Sequence[str], user: _User, *, timeout_s: float = START_S) -> str:
    """A short command's standard output (ClusterError with its output if it fails)."""
    with trio.fail_after(timeout_s):
        result = await trio.run_process(
            list(command), capture_stdout=True, capture_stderr=True, check=False, **user.options()
        )
    if result.returncode != 0:
        said = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise ClusterError(f"{Path(command[0]).name} failed ({result.returncode}): {said}")
    return result.stdout.decode(errors="replace").strip()


async def _teardown(servers: Sequence[_Server], signum: int, folder: Path) -> None:
    """Stop every server (shielded, bounded: SIGQUIT lets Postgres free its shared
    memory), then SIGKILL whatever is left and remove the folder; those last steps are
    synchronous, in ``finally``, so a second Ctrl-C in the middle leaves no process."""
    try:
        with trio.CancelScope(shield=True), trio.move_on_after(2 * STOP_S + 1):
            async with trio.open_nursery() as nursery:
                for server in servers:
                    nursery.start_soon(server.stop, signum)
    finally:
        for server in servers:
            server.kill_group()
        shutil.rmtree(folder, ignore_errors=True)
