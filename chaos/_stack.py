"""What an experiment runs against: a local stack it starts, or a running target.

``local_stack`` (``lomash chaos run NAME --local``) starts everything under a run
folder and removes it all on exit, also on Ctrl-C:

- a fresh database on the local PostgreSQL (``--postgres-url``, an admin URL), or on
  an embedded one when none answers there, migrated, with the demo seed and a chaos
  showroom (``CHAOS_SHOWROOM``: 20 consultants bookable around the clock, so a
  steady load never runs out of slots); dropped on exit;
- a Redis key prefix of its own on the local Redis (``--redis-url``, or an embedded
  Redis), its keys deleted on exit;
- a fault-injecting proxy (chaos/_proxy.py) in front of each, so the experiments can
  slow, blackhole or cut them;
- or, for the failover experiments, real replicas instead (chaos/_clusters.py): a
  PostgreSQL primary with a synchronous streaming replica (the service given the
  multi-host URL and the replica as ``LOMASH_DATABASE_REPLICA_URL``), and a Redis
  primary, replica and three Sentinels (``redis+sentinel://``);
- ``lomash serve`` with ``--workers N`` from ``chaos._launcher`` (the service plus the
  experiments' own routes, e.g. ``/_chaos/grow``), its JSON log kept in the run
  folder; ``broken=`` makes it wrong on purpose (proof that the verdicts can fail).

``target_stack`` (``--target URL``) attaches to a service already running on this
machine: the URL must be a loopback address, and the process that listens there (and
its workers) is found from /proc. Experiments that need a proxy in front of a
dependency or the chaos routes run only ``--local``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
import trio
import trio_asyncio

from adapters import staffed_showroom_sql
from chaos._clusters import PostgresPair, SentinelGroup, postgres_pair, redis_sentinel_group
from chaos._proxy import Proxy, open_proxy

__all__ = [
    "CHAOS_SHOWROOM",
    "Stack",
    "StackOptions",
    "local_stack",
    "loopback_only",
    "target_stack",
    "worker_pids",
]

REPO = Path(__file__).resolve().parent.parent
CHAOS_SHOWROOM = "chaos-showroom"
CONSULTANTS = 20
START_S = 60.0
STOP_S = 40.0

_SEED = staffed_showroom_sql(CHAOS_SHOWROOM, consultants=CONSULTANTS, prefix="chaos-c")


@dataclass
class Stack:
    """The service under test and the handles the experiments act through."""

    url: str
    parent_pid: int
    workers: int
    showroom: str
    local: bool
    postgres_proxy: Proxy | None = None
    redis_proxy: Proxy | None = None
    postgres_pair: PostgresPair | None = None
    redis_sentinel: SentinelGroup | None = None
    log_path: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        return worker_pids(self.parent_pid) if self.workers > 1 else [self.parent_pid]

    _changed: trio.Event = field(default_factory=trio.Event)

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.events if line.get("event") == event]

    def keep(self, line: dict[str, Any]) -> None:
        line["_at"] = trio.current_time()  # when it was seen, on the experiment's clock
        self.events.append(line)
        self._changed.set()
        self._changed = trio.Event()

    async def first_logged(
        self, event: str, *, after: float = 0.0, **fields: Any
    ) -> dict[str, Any]:
        """The first ``event`` line seen after ``after`` with these ``fields``
        (waiting for it: bound the wait with a cancel scope)."""
        while True:
            for line in self.logged(event):
                if line["_at"] > after and all(line.get(k) == v for k, v in fields.items()):
                    return line
            await self._changed.wait()


@dataclass(frozen=True, slots=True)
class StackOptions:
    workers: int = 2
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    folder: Path = Path(".chaos")
    broken: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    # A primary and a streaming replica of its own (chaos/_clusters.py) instead of a
    # database on the local PostgreSQL; a Redis primary, replica and three Sentinels
    # instead of a prefix on the local Redis.
    postgres_pair: bool = False
    redis_sentinel: bool = False


def loopback_only(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"{url}: chaos experiments target loopback addresses only")
    return url.rstrip("/")


def worker_pids(parent: int) -> list[int]:
    """The direct children of ``parent`` (the worker processes of ``--workers N``)."""
    found: list[int] = []
    for task in Path(f"/proc/{parent}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return sorted(found)


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def _holders(inodes: set[str]) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if (m := re.fullmatch(r"socket:\[(\d+)\]", link)) and m[1] in inodes:
                        pids.add(int(entry.name))
                        break
    return pids


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@asynccontextmanager
async def target_stack(url: str, showroom: str) -> AsyncIterator[Stack]:
    url = loopback_only(url)
    port = urlsplit(url).port or 80
    holders = _holders(_listening_inodes(port))
    if not holders:
        raise ValueError(f"{url}: no process of this machine listens on port {port}")
    parents = [pid for pid in holders if _parent_of(pid) not in holders]
    if len(parents) != 1:
        raise ValueError(f"{url}: several unrelated processes listen there: {sorted(holders)}")
    workers = len(holders) - 1 if len(holders) > 1 else 1
    yield Stack(url, parents[0], workers, showroom, local=False)


# -- the local stack ---------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _postgres_answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def _admin(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _redis_answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except (OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()


async def _forget_keys(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


async def _in_asyncio[T](function: Any, *args: Any) -> T:
    result: T = await trio_asyncio.aio_as_trio(function)(*args)
    return result


def _embedded(exits: ExitStack, folder: Path, kind: str) -> str:
    """An embedded server (devservers), when the machine has none running."""
    from devservers._embedded import embedded_postgres, embedded_redis

    if kind == "postgres":
        manager = embedded_postgres(folder, wait_s=30.0)
    else:
        manager = embedded_redis(folder, wait_s=30.0, probe_s=0.5)
    # Started from this (the main) thread, blocking for the second or two it takes: the
    # server dies with the thread that started it (PR_SET_PDEATHSIG is per thread),
    # and trio's worker threads end when idle.
    url: str = exits.enter_context(manager)
    return url


def _read_port(line: dict[str, Any], workers: int) -> str | None:
    if line.get("event") == ("workers_listening" if workers > 1 else "http_listening"):
        url = line.get("url") or (line.get("urls") or [None])[0]
        return str(url) if url else None
    return None


@asynccontextmanager
async def local_stack(options: StackOptions, *, say: Any = print) -> AsyncIterator[Stack]:
    run = f"{secrets.token_hex(4)}"
    folder = (options.folder / f"run-{run}").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    database = f"lomash_chaos_{run}"
    environment = {
        "LOMASH_REDIS_PREFIX": f"lomash-chaos-{run}:",
        "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
        "LOMASH_LOG_FORMAT": "json",
    }
    handles: dict[str, Any] = {}
    exits = ExitStack()
    try:
        async with trio_asyncio.open_loop(), AsyncExitStack() as resources:
            if options.postgres_pair:
                pair = await resources.enter_async_context(postgres_pair(synchronous=True))
                url = await pair.create_database(database)
                await _in_asyncio(_admin, url, _SEED)
                await pair.wait_replicated()
                environment["LOMASH_DATABASE_URL"] = url
                environment["LOMASH_DATABASE_REPLICA_URL"] = pair.replica_url_for(database)
                handles["postgres_pair"] = pair
            else:
                admin = options.postgres_url
                if not await _in_asyncio(_postgres_answers, admin):
                    say(f"no PostgreSQL answers at {admin}: starting an embedded one")
                    admin = _embedded(exits, folder / "embedded", "postgres")
                await _in_asyncio(_admin, admin, f'CREATE DATABASE "{database}"')
                resources.push_async_callback(_drop_database, admin, database)
                url = _with_database(admin, database)
                await _prepare(url)
                proxy = await resources.enter_async_context(open_proxy(_port(url, 5432)))
                environment["LOMASH_DATABASE_URL"] = _via(url, proxy)
                handles["postgres_proxy"] = proxy
            if options.redis_sentinel:
                group = await resources.enter_async_context(redis_sentinel_group())
                environment["LOMASH_REDIS_URL"] = group.url
                handles["redis_sentinel"] = group
            else:
                redis_url = options.redis_url
                if not await _in_asyncio(_redis_answers, redis_url):
                    say(f"no Redis answers at {redis_url}: starting an embedded one")
                    redis_url = _embedded(exits, folder / "embedded", "redis")
                prefix = environment["LOMASH_REDIS_PREFIX"]
                resources.push_async_callback(_in_asyncio, _forget_keys, redis_url, prefix)
                proxy = await resources.enter_async_context(open_proxy(_port(redis_url, 6379)))
                environment["LOMASH_REDIS_URL"] = _via(redis_url, proxy)
                handles["redis_proxy"] = proxy
            environment.update(_local_stripe(exits, say))
            environment.update(options.environment)
            async with _service(options, environment, folder) as stack:
                for name, handle in handles.items():
                    setattr(stack, name, handle)
                stack.settings = environment
                yield stack
    finally:
        exits.close()


def _local_stripe(exits: ExitStack, say: Any) -> dict[str, str]:
    """A local Stripe (localstripe, devservers) for the orders of the load: its
    settings, or none if it is not installed (the load then places no orders)."""
    from devservers import local_stripe
    from devservers._embedded import EmbeddedError

    try:
        url: str = exits.enter_context(local_stripe(wait_s=30.0))  # this thread: see _embedded
    except EmbeddedError as error:
        say(f"no orders in the load: {error}")
        return {}
    return {
        "LOMASH_STRIPE_SECRET_KEY": "sk_test_lomash_chaos",
        "LOMASH_STRIPE_WEBHOOK_SECRET": "whsec_lomash_chaos",
        "LOMASH_STRIPE_API_BASE": url,
    }


def _port(url: str, default: int) -> int:
    return urlsplit(url).port or default


async def _drop_database(admin: str, database: str) -> None:
    with trio.move_on_after(15, shield=True):
        await _in_asyncio(_admin, admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _via(url: str, proxy: Proxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")
    host = f"{netloc[0]}{netloc[1]}127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=host))


async def _prepare(url: str) -> None:
    """Migrations, the demo seed and the chaos showroom (with the service's own code)."""
    from adapters import MIGRATIONS_DIR, load_seed, migrate_up

    await migrate_up(url, MIGRATIONS_DIR)
    await load_seed(url)
    await _in_asyncio(_admin, url, _SEED)


@asynccontextmanager
async def _service(
    options: StackOptions, environment: dict[str, str], folder: Path
) -> AsyncIterator[Stack]:
    env = {**os.environ, **environment}
    if options.broken:
        env["CHAOS_BROKEN"] = options.broken
    command = [sys.executable, "-m", "chaos._launcher", "serve", "--host", "127.0.0.1"]
    command += ["--port", "0", "--workers", str(options.workers)]
    log_path = folder / "service.log"
    process = await trio.lowlevel.open_process(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C reaches the experiment, which stops this
    )
    stack = Stack("", process.pid, options.workers, CHAOS_SHOWROOM, local=True, log_path=log_path)
    ready = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep_log, process, log_path, stack, ready)
            with trio.fail_after(START_S):
                await ready.wait()
            if process.returncode is not None:
                raise RuntimeError(f"the service exited with {process.returncode}: see {log_path}")
            yield stack
            nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(STOP_S, shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_S - 5):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _keep_log(process: trio.Process, path: Path, stack: Stack, ready: trio.Event) -> None:
    assert process.stderr is not None
    buffer = b""
    with path.open("ab") as out:
        async for chunk in process.stderr:
            out.write(chunk)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if line.get("event") != "request":  # one per request: not kept
                    stack.keep(line)
                if (url := _read_port(line, stack.workers)) and not stack.url:
                    stack.url = url.rstrip("/")
                    ready.set()
    ready.set()  # the process ended before it listened
