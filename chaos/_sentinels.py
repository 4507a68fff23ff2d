"""A Redis primary with a replica under three Sentinels on loopback, and a minimal RESP
client to drive them from any trio task (see chaos/_clusters.py)."""

from __future__ import annotations

import contextlib
import secrets
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from chaos._servers import (
    POLL_S,
    START_S,
    STOP_S,
    ClusterError,
    _free_port,
    _make_folder,
    _Server,
    _teardown,
    _until,
    _User,
    find_redis_server,
)

SENTINEL_SERVICE = "lomash"
SENTINEL_DOWN_AFTER_MS = 1000
SENTINEL_FAILOVER_TIMEOUT_MS = 5000

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
