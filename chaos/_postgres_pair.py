"""A Postgres primary with a streaming replica on loopback (see chaos/_clusters.py)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio

from chaos._servers import (
    START_S,
    STOP_S,
    ClusterError,
    _free_port,
    _make_folder,
    _run,
    _Server,
    _tail,
    _teardown,
    _until,
    _User,
    find_postgres_bin,
)

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
