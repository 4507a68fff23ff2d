"""HTTP benchmark: this service vs a FastAPI+uvicorn+asyncpg peer, side by side.

    python -m bench.http [--seconds 8] [--connections 50] [--workers 1]

Both serve ``GET /health/live`` (no dependencies) and ``GET /v1/showrooms`` (the peer:
one Postgres read; ours: the catalogue's in-process copy, at most
``LOMASH_CATALOGUE_MEMORY_S`` old) from the same database with 20 seeded showrooms;
ours also ``GET /health/ready``, ``GET /v1/products`` and a week of one showroom's
free slots (``GET /v1/appointments/availability``, warm: answered from memory). The
floor is measured in the same run: a bare ASGI app (a fixed JSON body, no framework:
bench/peers/floor.py) on hypercorn's trio worker, and (with 1 worker) the same app on
our own lean driver (bench/peers/floor_lean.py), what any route of ours costs at
least. Ours runs with its configured driver (``LOMASH_HTTP_DRIVER``, lean by
default). wrk drives each for the same duration with the same connections on
loopback. Prints requests/s, p50 and p99 for each, and the ratios ours / peer, ours /
floor (hypercorn) and ours / lean floor. Needs ``wrk`` (Debian package) and the
``bench`` extra (fastapi, uvicorn, uvloop, httptools).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from adapters import staffed_showroom_sql
from bench.proc import listening_ports

REPO = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "LOMASH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LOMASH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ROUTES = ("/health/live", "/v1/showrooms")
# A week of a two-consultant showroom's free slots (09:00-17:00): a warm read.
AVAILABILITY = "/v1/appointments/availability?type=SHOWROOM&showroom_id=bench-avail"
OURS_ONLY = ("/health/ready", "/v1/products", AVAILABILITY)
FLOOR = [sys.executable, "-m", "hypercorn", "--worker-class", "trio"]
FLOOR += ["--bind", "127.0.0.1:0", "bench.peers.floor:app"]
# The same app on our lean driver (1 worker): the floor of our own stack.
LEAN_FLOOR = [sys.executable, "-m", "bench.peers.floor_lean"]
START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _database_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _seed(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.executemany(
            "INSERT INTO showrooms (id, name, address, city, postcode) VALUES ($1, $2, $3, $4, $5)",
            [
                (f"sr-{n:02d}", f"Showroom {n:02d}", f"{n} High St", "Leeds", "LS1 1AA")
                for n in range(20)
            ],
        )
        await connection.execute(
            staffed_showroom_sql(
                "bench-avail", consultants=2, prefix="bench-av-", hours=("09:00", "17:00")
            )
        )
    finally:
        await connection.close()


@contextmanager
def bench_database(
    seed: Callable[[str], Coroutine[Any, Any, None]] = _seed,
) -> Iterator[str]:
    """A throwaway database, migrated and seeded by ``seed(url)``, dropped on exit."""
    name = f"lomash_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = _database_url(name)
    try:
        subprocess.run(
            [sys.executable, "-m", "service", "migrate", "up"],
            cwd=REPO,
            env={**os.environ, "LOMASH_DATABASE_URL": url},
            check=True,
            capture_output=True,
        )
        asyncio.run(seed(url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True, slots=True)
class Running:
    """A server process and the port it bound (it was started with ``--port 0``)."""

    process: subprocess.Popen[bytes]
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _answers_live(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _wait_ready(process: subprocess.Popen[bytes]) -> int:
    """The port ``process`` (or a child of it) listens on, once it answers there."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        ports = listening_ports(process.pid)
        if len(ports) > 1:
            raise RuntimeError(f"server listens on several ports {sorted(ports)}: which one?")
        if ports and _answers_live(port := ports.pop()):
            return port
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


@contextmanager
def server(
    command: list[str], env: dict[str, str], output: IO[bytes] | None = None
) -> Iterator[Running]:
    """The server process, once it answers ``GET /health/live``; stopped on exit.

    ``command`` makes it bind port 0 on 127.0.0.1; the port it got is read from /proc
    (its listening socket), so no other process can take it between a pick and a bind.
    Its stdout and stderr go to ``output``, or nowhere.
    """
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL if output is None else output,
        stderr=subprocess.DEVNULL if output is None else output,
    )
    try:
        yield Running(process, _wait_ready(process))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, connections: int) -> Result:
    output = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    latency = {q: float(v) * _UNITS[u] for q, v, u in _LATENCY.findall(output)}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return Result(
        rate, latency.get("50", 0.0), latency.get("99", 0.0), int(errors[1]) if errors else 0
    )


def uvicorn_command(app: str, *, workers: int = 1) -> list[str]:
    """A peer's command: uvicorn with uvloop and httptools on a port the kernel picks."""
    return [
        *(sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0"),
        *("--loop", "uvloop", "--http", "httptools", "--log-level", "warning"),
        *("--no-access-log", "--workers", str(workers)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP benchmark vs a FastAPI peer")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    with bench_database() as url:
        ours_env = {
            "LOMASH_DATABASE_URL": url,
            "LOMASH_REDIS_URL": REDIS_URL,
            "LOMASH_REDIS_PREFIX": f"lomash_bench:{secrets.token_hex(4)}:",
            "LOMASH_LOG_LEVEL": "warning",
            "LOMASH_WORKERS": str(args.workers),
        }
        ours = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "0"]
        peer = uvicorn_command("bench.peers.fastapi_app:app", workers=args.workers)
        results: dict[tuple[str, str], Result] = {}
        with (
            server(ours, ours_env) as ours_server,
            server(peer, {"DATABASE_URL": url}) as peer_server,
            server([*FLOOR, "--workers", str(args.workers)], {}) as floor_server,
            server(LEAN_FLOOR, {}) as lean_floor_server,
        ):
            runs = [(route, "ours", ours_server) for route in (*ROUTES, *OURS_ONLY)]
            runs += [(route, "peer", peer_server) for route in ROUTES]
            runs += [("/", "floor", floor_server)]
            if args.workers == 1:
                runs += [("/", "lean", lean_floor_server)]
            for route, name, running in runs:
                wrk(running.url(route), 2, args.connections)  # warm-up
                results[(route, name)] = wrk(running.url(route), args.seconds, args.connections)
    floor = results[("/", "floor")]
    print(
        f"HTTP benchmark: {args.seconds}s per run, {args.connections} connections, "
        f"{args.workers} worker(s) each, wrk on loopback, 2 cores shared"
    )
    print(f"{'route':<30} {'impl':<6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for (route, name), r in results.items():
        print(
            f"{route:<30} {name:<6} {r.requests_per_s:>9.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.errors:>8}"
        )
    for route in (*ROUTES, *OURS_ONLY):
        ours_rate = results[(route, "ours")].requests_per_s
        line = f"{route:<30} ours/floor {ours_rate / floor.requests_per_s:.2f}x"
        if ("/", "lean") in results:
            line += f"   ours/lean floor {ours_rate / results[('/', 'lean')].requests_per_s:.2f}x"
        if (route, "peer") in results:
            line += f"   ours/peer {ours_rate / results[(route, 'peer')].requests_per_s:.2f}x"
        print(line)
    if any(r.errors for r in results.values()):
        sys.exit("invalid run: some answers were not 2xx")


if __name__ == "__main__":
    main()
