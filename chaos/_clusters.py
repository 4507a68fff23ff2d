"""Real failovers on loopback: a Postgres primary with a streaming replica, and a Redis
primary with a replica under three Sentinels.

The proxy (chaos/_proxy.py) makes a dependency fail the way the network does; these
make it fail the way a cluster does: the primary goes away and another server takes
its role (a promoted standby, a replica the Sentinels elect), at another address. Both
context managers start every server they need, listening on 127.0.0.1 only (on free
ports), with their files in a temporary folder of their own; on exit, however it
comes (an error, a cancellation, Ctrl-C), every process is killed and the folder is
removed. Servers are also told to stop if this process dies without a clean exit
(Linux's parent-death signal).

async with postgres_pair(synchronous=True) as pg:   # a primary and a streaming replica
    url = await pg.create_database("lomash")   # migrated, seeded, on the replica too
    pg.url / pg.replica_url              # postgres database: multi-host URL / replica only
    pg.url_for("lomash"), pg.replica_url_for("lomash")
    await pg.stop_primary()              # an immediate shutdown (a crash), or kill=True
    await pg.promote()                   # the replica becomes a writable primary
    await pg.wait_replicated()           # the replica has replayed all the primary wrote
    await pg.sql(pg.replica_port, "SELECT 1")  # one statement through psql

async with redis_sentinel_group() as rs:   # primary, replica, three Sentinels
    rs.url                               # redis+sentinel://127.0.0.1:S1,S2,S3/lomash
    await rs.kill_primary()              # SIGKILL
    await rs.wait_promoted()             # the Sentinels name the replica as master
    await rs.restart_old_primary()       # back, and made a replica by the Sentinels
    await rs.command("KEYS", "*")        # one command to the current primary

Postgres refuses to run as root: when we are root, its servers and tools run as the
``postgres`` user (``POSTGRES_USER``), which then owns the temporary folder; the
parent folder must be reachable by that user (when it is not, the system's temporary
folder is used). Replication is asynchronous unless ``synchronous=True``: then a
commit waits for the replica, and a promotion loses nothing that was confirmed (with
asynchronous replication the last commits before a crash can be lost: a 201 that the
promoted replica never heard of). The multi-host URL relies on libpq-style
``target_session_attrs`` (asyncpg tries each host in turn and keeps the one that
takes writes; adapters/_postgres.py gives each host its own share of the connect
timeout, so a silent old primary does not hide the promoted one).

Sentinels: quorum 2 of 3, ``down-after-milliseconds`` 1000 and ``failover-timeout``
5000, so a failover takes a few seconds; they are told of each other and of the
replica at start, and the replica's first sync starts at once, so the group is ready
in well under a second. Servers run with ``--save "" --appendonly no``.

Control queries go through ``psql`` and a minimal RESP client (``redis_command``),
not through asyncpg / redis-py, so these helpers work in any trio task; only
``create_database`` (migrations and the seed) needs an asyncio loop, and opens one
if the caller has none. Ports are free ones picked at start (one taken meanwhile is
replaced by another). Servers are started from the calling (trio) thread, not a
worker thread, since the parent-death signal follows the thread that forked.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

__all__ = [
    "POSTGRES_USER",
    "SENTINEL_SERVICE",
    "ClusterError",
    "PostgresPair",
    "RedisReplyError",
    "Reply",
    "SentinelGroup",
    "find_postgres_bin",
    "find_redis_server",
    "postgres_pair",
    "redis_command",
    "redis_sentinel_group",
]

POSTGRES_USER = "postgres"
SENTINEL_SERVICE = "lomash"
START_S = 30.0  # bound on a server's start (initdb, a base backup, readiness)
STOP_S = 5.0  # how long a stopped server gets to exit before it is SIGKILLed
POLL_S = 0.05
SENTINEL_DOWN_AFTER_MS = 1000
SENTINEL_FAILOVER_TIMEOUT_MS = 5000

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


# -- Postgres ------------------------------------------------------------------------

_POSTGRES_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 8
wal_keep_size = '128MB'
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 1s
fsync = off
full_page_writes = off
dynamic_shared_memory_type = mmap
shared_buffers = '32MB'
max_connections = 100
logging_collector = off
log_min_messages = warning
"""

_PG_HBA = """
local all all trust
host all all 127.0.0.1/32 trust
local replication all trust
host replication all 127.0.0.1/32 trust
"""


class _PostgresNode:
    def __init__(self, name: str, data: Path, port: int, server: _Server) -> None:
        self.name = name
        self.data = data
        self.port = port
        self.server = server


class PostgresPair:
    """A primary and its streaming replica (see the module docstring)."""

    def __init__(self, folder: Path, bin_dir: Path, user: _User, *, synchronous: bool) -> None:
        self.folder = folder
        self.synchronous = synchronous
        self._bin = bin_dir
        self._user = user
        self._nodes: list[_PostgresNode] = []
        self.primary_port = 0
        self.replica_port = 0
        self.promoted = False

    # URLs ---------------------------------------------------------------------------
    def url_for(self, database: str) -> str:
        """Both hosts, for the server that takes writes (whichever that is now)."""
        hosts = f"127.0.0.1:{self.primary_port},127.0.0.1:{self.replica_port}"
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    def replica_url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.replica_port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    @property
    def replica_url(self) -> str:
        return self.replica_url_for("postgres")

    # Control ------------------------------------------------------------------------
    async def sql(self, port: int, query: str, *, database: str = "postgres") -> str:
        """One statement through psql on ``port``; its result, unaligned."""
        return await _run(
            [
                str(self._bin / "psql"),
                *("-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"),
                *("-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database),
                *("-c", query),
            ],
            _User(),
            timeout_s=10.0,
        )

    async def create_database(self, name: str, *, migrate: bool = True, seed: bool = True) -> str:
        """Create ``name`` on the primary, apply the project's migrations and the demo
        seed (``adapters.migrate_up`` / ``load_seed``), wait until the replica has it
        all; return its multi-host URL."""
        await self.sql(self.primary_port, f'CREATE DATABASE "{name}"')
        url = f"postgresql://postgres@127.0.0.1:{self.primary_port}/{name}"
        if migrate or seed:
            await _with_asyncio(_prepare(url, migrate=migrate, seed=seed))
        await self.wait_replicated()
        return self.url_for(name)

    async def stop_primary(self, *, kill: bool = False) -> None:
        """An immediate shutdown of the primary (SIGQUIT: what ``pg_ctl stop -m
        immediate`` sends, no checkpoint, clients cut), or with ``kill`` a SIGKILL of
        the postmaster and its backends (the machine is gone); returns once it exited."""
        primary = self._nodes[0].server
        if kill:
            primary.kill_group()
        else:
            primary.send(signal.SIGQUIT)
        if not await primary.wait(STOP_S):
            primary.kill_group()
            await primary.wait(STOP_S)

    async def promote(self, *, timeout_s: float = START_S) -> float:
        """Promote the replica (``pg_promote()``) and wait until it takes writes
        (``pg_is_in_recovery()`` is false); returns the seconds that took."""
        started = trio.current_time()
        with trio.fail_after(timeout_s):
            await self.sql(self.replica_port, "SELECT pg_promote(true, 30)")
            await _until(partial(self._is, self.replica_port, "SELECT NOT pg_is_in_recovery()"))
        self.promoted = True
        return trio.current_time() - started

    async def wait_replicated(self, *, timeout_s: float = START_S) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        with trio.fail_after(timeout_s):
            target = await self.sql(self.primary_port, "SELECT pg_current_wal_lsn()")
            query = f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
            await _until(partial(self._is, self.replica_port, query))

    async def in_recovery(self, port: int) -> bool:
        return await self._is(port, "SELECT pg_is_in_recovery()")

    async def _is(self, port: int, query: str) -> bool:
        """Whether the boolean ``query`` answers true on ``port``."""
        return await self.sql(port, query) == "t"

    # Start --------------------------------------------------------------------------
    async def _start(self) -> None:
        primary = self.folder / "primary"
        await _run(
            [
                str(self._bin / "initdb"),
                *("-D", str(primary), "-U", "postgres", "--auth=trust"),
                *("-E", "UTF8", "--locale=C", "--no-sync"),
            ],
            self._user,
        )
        sockets = self.folder / "sockets"
        sockets.mkdir()
        self._user.own(sockets)
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(_POSTGRES_CONF.format(sockets=sockets))
        (primary / "pg_hba.conf").write_text(_PG_HBA)
        self._user.own(primary / "pg_hba.conf")
        node = await self._start_node("primary", primary)
        self.primary_port = node.port
        replica = self.folder / "replica"
        await _run(
            [
                str(self._bin / "pg_basebackup"),
                *("-h", "127.0.0.1", "-p", str(node.port), "-U", "postgres"),
                *("-D", str(replica), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"),
            ],
            self._user,
        )
        self.replica_port = (await self._start_node("replica", replica)).port
        if self.synchronous:
            await self.sql(self.primary_port, "ALTER SYSTEM SET synchronous_standby_names = '*'")
            await self.sql(self.primary_port, "SELECT pg_reload_conf()")
            with trio.fail_after(START_S):
                query = "SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state = 'sync'"
                await _until(partial(self._is, self.primary_port, query))

    async def _start_node(self, name: str, data: Path) -> _PostgresNode:
        """Start a postmaster on a free port (another if that one was taken meanwhile)."""
        for _ in range(3):
            port = _free_port()
            log = self.folder / f"{name}-{port}.log"
            command = [str(self._bin / "postgres"), "-D", str(data), "-p", str(port)]
            server = _Server(f"postgres {name}", command, log, self._user, signal.SIGQUIT)
            node = _PostgresNode(name, data, port, server)
            self._nodes.append(node)
            if await self._ready(node):
                return node
            await server.stop(signal.SIGQUIT)
            if "Address already in use" not in _tail(log, 50):
                raise server.failure("did not start")
        raise ClusterError(f"postgres {name}: no free port after 3 tries")

    async def _ready(self, node: _PostgresNode) -> bool:
        with trio.move_on_after(START_S):
            while node.server.running:
                with contextlib.suppress(ClusterError):
                    await self.sql(node.port, "SELECT 1")
                    return True
                await trio.sleep(0.1)
        return False


def _prepare(url: str, *, migrate: bool, seed: bool) -> Callable[[], Awaitable[None]]:
    async def prepare() -> None:
        from adapters import load_seed, migrate_up

        if migrate:
            await migrate_up(url)
        if seed:
            await load_seed(url)

    return prepare


async def _with_asyncio(step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` (a trio function using the asyncio bridge) inside the caller's
    trio-asyncio loop, or a loop of its own if there is none."""
    import trio_asyncio

    if trio_asyncio.current_loop.get() is not None:
        await step()
        return
    async with trio_asyncio.open_loop():
        await step()


@asynccontextmanager
async def postgres_pair(
    folder: Path | None = None, *, synchronous: bool = False
) -> AsyncIterator[PostgresPair]:
    """A started primary and streaming replica under a new folder inside ``folder``
    (default: the system's temporary folder); everything is gone on exit.

    Replication is asynchronous unless ``synchronous``: then every commit waits until
    the replica has it (``synchronous_standby_names = '*'``), so a promotion loses no
    committed write; asynchronously, the last commits before a crash may be lost."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise ClusterError("no PostgreSQL binaries (initdb, postgres, pg_basebackup, psql)")
    user = _User.for_postgres()
    home = _make_folder(folder, "lomash-pg-", user)
    pair = PostgresPair(home, bin_dir, user, synchronous=synchronous)
    try:
        await pair._start()
        yield pair
    finally:
        await _teardown([node.server for node in pair._nodes], signal.SIGQUIT, home)


# -- Redis and Sentinel --------------------------------------------------------------

type Reply = str | int | list[Reply] | RedisReplyError | None


class RedisReplyError(Exception):
    """An error reply (``-ERR ...``)."""


async def redis_command(port: int, *arguments: str | int, timeout_s: float = 2.0) -> Reply:
    """One command to the Redis (or Sentinel) on 127.0.0.1:``port``, its decoded reply:
    a tiny RESP2 client, so the helpers need no asyncio loop. Connection failures
    raise OSError; an error reply is returned as ``RedisReplyError``."""
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            parts = [str(a).encode() for a in arguments]
            request = b"*%d\r\n" % len(parts) + b"".join(
                b"$%d\r\n%s\r\n" % (len(p), p) for p in parts
            )
            await stream.send_all(request)
            return await _Reader(stream).reply()


class _Reader:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def _fill(self) -> None:
        data = await self._stream.receive_some(65536)
        if not data:
            raise OSError("redis closed the connection")
        self._buffer += data

    async def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            await self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size + 2:
            await self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
        return data

    async def reply(self) -> Reply:
        line = await self._line()
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisReplyError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if int(rest) < 0 else (await self._exactly(int(rest))).decode()
        if kind == b"*":
            return None if int(rest) < 0 else [await self.reply() for _ in range(int(rest))]
        raise OSError(f"not a RESP reply: {line!r}")


_SENTINEL_CONF = """
port {port}
bind 127.0.0.1
daemonize no
dir "{folder}"
sentinel resolve-hostnames no
sentinel monitor {service} 127.0.0.1 {primary} 2
sentinel down-after-milliseconds {service} {down_after}
sentinel failover-timeout {service} {failover_timeout}
sentinel parallel-syncs {service} 1
sentinel myid {myid}
sentinel known-replica {service} 127.0.0.1 {replica}
"""
# Told at start (so they need not find each other by hello messages, every 2 s): a
# Sentinel's peers, which it keeps checking and updates when their address changes.
_KNOWN_SENTINEL = "sentinel known-sentinel {service} 127.0.0.1 {port} {myid}\n"


class SentinelGroup:
    """A Redis primary, its replica, and three Sentinels watching them (see the module
    docstring). ``primary_port`` is the master as last seen by ``wait_promoted``."""

    def __init__(self, folder: Path, binary: str) -> None:
        self.folder = folder
        self._binary = binary
        self._servers: list[_Server] = []
        self._redis: dict[int, _Server] = {}
        self.primary_port = 0
        self.replica_port = 0
        self.old_primary_port = 0
        self.sentinel_ports: list[int] = []
        self._myids: list[str] = []
        self.killed_at: float | None = None

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}"

    @property
    def primary_url(self) -> str:
        """The current primary directly (no Sentinel)."""
        return f"redis://127.0.0.1:{self.primary_port}/0"

    async def command(self, *arguments: str | int, port: int | None = None) -> Reply:
        """A command to the current primary (or to ``port``)."""
        return await redis_command(port or self.primary_port, *arguments)

    async def masters(self) -> list[int | None]:
        """The master's port as each Sentinel reports it (None: no answer)."""
        seen: list[int | None] = []
        for port in self.sentinel_ports:
            try:
                reply = await redis_command(
                    port, "SENTINEL", "get-master-addr-by-name", SENTINEL_SERVICE
                )
            except (OSError, trio.TooSlowError):
                reply = None
            match reply:
                case [str(), str(master_port)]:
                    seen.append(int(master_port))
                case _:
                    seen.append(None)
        return seen

    async def kill_primary(self) -> None:
        """SIGKILL the current primary (no goodbye to its clients or replicas)."""
        server = self._redis[self.primary_port]
        server.kill_group()
        await server.wait(STOP_S)
        self.killed_at = trio.current_time()

    async def wait_promoted(self, *, timeout_s: float = 30.0) -> float:
        """Wait until every Sentinel names the replica as master and it says so itself
        (``ROLE``); it becomes ``primary_port``. Returns the seconds since
        ``kill_primary`` (or since this call)."""
        started = self.killed_at if self.killed_at is not None else trio.current_time()
        with trio.fail_after(timeout_s):
            while True:
                if await self.masters() == [self.replica_port] * len(self.sentinel_ports):
                    role = await self._role(self.replica_port)
                    if role == "master":
                        break
                await trio.sleep(POLL_S * 2)
        self.old_primary_port, self.primary_port = self.primary_port, self.replica_port
        self.replica_port = self.old_primary_port
        return trio.current_time() - started

    async def restart_old_primary(self, *, timeout_s: float = 30.0) -> None:
        """Start the killed primary again on its port, with no data; the Sentinels make
        it a replica of the new master. Returns once it replicates from it."""
        port = self.old_primary_port
        if not port or self._redis[port].running:
            raise ClusterError("restart_old_primary: no killed and replaced primary")
        self._start_redis(f"redis {port} (restarted)", port, [])
        with trio.fail_after(timeout_s):
            while True:
                with contextlib.suppress(OSError, trio.TooSlowError):
                    reply = await redis_command(port, "ROLE")
                    expected = ["slave", "127.0.0.1", self.primary_port, "connected"]
                    if isinstance(reply, list) and reply[:4] == expected:
                        return
                await trio.sleep(POLL_S * 2)

    async def _role(self, port: int) -> str | None:
        try:
            reply = await redis_command(port, "ROLE")
        except (OSError, trio.TooSlowError):
            return None
        return reply[0] if isinstance(reply, list) and isinstance(reply[0], str) else None

    # Start --------------------------------------------------------------------------
    def _start_redis(self, name: str, port: int, extra: Sequence[str]) -> _Server:
        folder = self.folder / f"redis-{port}"
        folder.mkdir(exist_ok=True)
        command = [
            self._binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", str(folder), "--daemonize", "no", "--protected-mode", "no"),
            # A replica's first sync starts at once, not after the default 5 s wait
            # for more replicas to share it.
            *("--repl-diskless-sync-delay", "0"),
            *extra,
        ]
        server = _Server(name, command, self.folder / f"redis-{port}.log", _User(), signal.SIGKILL)
        self._servers.append(server)
        self._redis[port] = server
        return server

    async def _start(self) -> None:
        self.primary_port = await self._ready_redis("primary", [])
        self.replica_port = await self._ready_redis(
            "replica", ["--replicaof", "127.0.0.1", str(self.primary_port)]
        )
        with trio.fail_after(START_S):
            await _until(self._replica_linked)
        self.sentinel_ports = [_free_port() for _ in range(3)]
        self._myids = [secrets.token_hex(20) for _ in range(3)]
        for n in range(3):
            self.sentinel_ports[n] = await self._ready_sentinel(n)
        await self._sentinels_agree()

    async def _ready_redis(self, name: str, extra: Sequence[str]) -> int:
        for _ in range(3):
            port = _free_port()
            server = self._start_redis(f"redis {name}", port, extra)
            if await self._answers(server, port):
                return port
        raise server.failure("did not start")

    async def _ready_sentinel(self, n: int) -> int:
        """Start Sentinel ``n`` on its port (on another if that one was taken)."""
        folder = self.folder / f"sentinel-{n}"
        folder.mkdir(exist_ok=True)
        for attempt in range(3):
            port = self.sentinel_ports[n] if attempt == 0 else _free_port()
            conf = folder / "sentinel.conf"  # rewritten by the Sentinel as it learns
            peers = [
                _KNOWN_SENTINEL.format(service=SENTINEL_SERVICE, port=p, myid=self._myids[m])
                for m, p in enumerate(self.sentinel_ports)
                if m != n
            ]
            settings = _SENTINEL_CONF.format(
                port=port,
                folder=folder,
                service=SENTINEL_SERVICE,
                primary=self.primary_port,
                replica=self.replica_port,
                down_after=SENTINEL_DOWN_AFTER_MS,
                failover_timeout=SENTINEL_FAILOVER_TIMEOUT_MS,
                myid=self._myids[n],
            )
            conf.write_text(settings + "".join(peers))
            log = self.folder / f"sentinel-{n}.log"
            command = [self._binary, str(conf), "--sentinel"]
            server = _Server(f"sentinel {n}", command, log, _User(), signal.SIGKILL)
            self._servers.append(server)
            if await self._answers(server, port):
                return port
        raise server.failure("did not start")

    async def _answers(self, server: _Server, port: int) -> bool:
        with trio.move_on_after(START_S):
            while server.running:
                with contextlib.suppress(OSError, trio.TooSlowError):
                    if await redis_command(port, "PING") == "PONG":
                        return True
                await trio.sleep(POLL_S)
        server.kill_group()
        await server.wait(STOP_S)
        return False

    async def _replica_linked(self) -> bool:
        reply = await redis_command(self.replica_port, "INFO", "replication")
        return isinstance(reply, str) and "master_link_status:up" in reply

    async def _sentinels_agree(self) -> None:
        """Every Sentinel knows the replica and the two other Sentinels (found by their
        hello messages): until then a failover could not be authorised."""
        with trio.fail_after(START_S):
            for port in self.sentinel_ports:
                while True:
                    reply = await redis_command(port, "SENTINEL", "master", SENTINEL_SERVICE)
                    fields = _pairs(reply)
                    if (
                        fields.get("num-slaves") == "1"
                        and fields.get("num-other-sentinels") == "2"
                        and fields.get("flags") == "master"
                    ):
                        break
                    await trio.sleep(POLL_S * 2)


def _pairs(reply: Reply) -> dict[str, str]:
    if not isinstance(reply, list):
        return {}
    items = [str(item) for item in reply]
    return dict(zip(items[::2], items[1::2], strict=False))


@asynccontextmanager
async def redis_sentinel_group(folder: Path | None = None) -> AsyncIterator[SentinelGroup]:
    """A started Redis primary, replica and three Sentinels (agreeing on the master)
    under a new folder inside ``folder``; everything is gone on exit."""
    binary = find_redis_server()
    if binary is None:
        raise ClusterError("no redis-server binary")
    home = _make_folder(folder, "lomash-redis-", _User())
    group = SentinelGroup(home, binary)
    try:
        await group._start()
        yield group
    finally:
        await _teardown(group._servers, signal.SIGKILL, home)
