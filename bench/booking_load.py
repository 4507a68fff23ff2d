"""The booking bench's load: one measured run of ``POST /v1/appointments`` through wrk
(bench/booking.lua) against a server, or of the same transaction through pgbench
(bench/booking.pgbench.sql) against Postgres, as a ``Run``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
import trio_asyncio

from adapters import open_redis
from bench.booking_data import CONSULTANTS, CONTENDED_SLOTS, Slots, reset, settled_counts
from bench.http import REDIS_URL
from bench.proc import cpu_seconds
from bench.profile import recording
from config import RedisSettings

HERE = Path(__file__).resolve().parent
LUA = HERE / "booking.lua"
PGBENCH_SCRIPT = HERE / "booking.pgbench.sql"
WRK_THREADS = 2
PGBENCH_THREADS = 2
WARMUP_S = 2
# A run stops after this many answers per second of --seconds: bounded in count, and
# the slot numbers it may use stay inside the horizon.
MAX_RATE = 15_000


@dataclass(frozen=True, slots=True)
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]  # HTTP status -> answers (pgbench: booked 201, not 409)
    socket_errors: int  # pgbench: failed transactions
    used: int  # slot numbers taken
    samples: tuple[str, ...]  # answers neither 201 nor 409, or pgbench's complaints
    capped: bool = False
    booked_rows: int = 0  # appointments in the database after the run
    cpu_ms_per_request: float | None = None  # the server's, Postgres not included

    @property
    def answers(self) -> int:
        return sum(self.statuses.values())

    def share(self, status: int) -> float:
        return 100.0 * self.statuses.get(status, 0) / max(1, self.answers)

    @property
    def other(self) -> int:
        return self.answers - self.statuses.get(201, 0) - self.statuses.get(409, 0)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


_RESULT = re.compile(r"^RESULT (.*)$", re.MULTILINE)
_STATUS = re.compile(r"^STATUS (\d+) (\d+)$", re.MULTILINE)
_SAMPLE = re.compile(r"^SAMPLE (.*)$", re.MULTILINE)


def wrk(
    url: str, seconds: int, connections: int, offset: int, slots: int, base: int, cap: int, tag: str
) -> Run:
    """Drive ``url`` with bench/booking.lua (its arguments are explained there)."""
    per_thread = max(1, cap // WRK_THREADS)
    arguments = [offset, CONSULTANTS, slots, base, WRK_THREADS, per_thread, tag]
    output = subprocess.run(
        ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds}s"]
        + ["--timeout", "10s", "-s", str(LUA), url, "--"]
        + [str(a) for a in arguments],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = _RESULT.search(output)
    if found is None:
        raise RuntimeError(f"wrk printed no RESULT line:\n{output}")
    fields = {k: float(v) for k, v in (pair.split("=") for pair in found[1].split())}
    errors = sum(int(fields[k]) for k in ("connect", "read", "write", "timeout"))
    return Run(
        requests_per_s=fields["requests"] / (fields["duration_us"] / 1e6),
        p50_ms=fields["p50_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        statuses={int(s): int(n) for s, n in _STATUS.findall(output)},
        socket_errors=errors,
        used=int(fields["used"]),
        samples=tuple(_SAMPLE.findall(output)),
        capped=fields["capped"] > 0,
    )


def run_http(
    url: str,
    database: str,
    process: subprocess.Popen[bytes],
    args: argparse.Namespace,
    variant: str,
    slots: Slots,
    tag: str,
    *,
    empty: Callable[[str], None] = reset,
    stacks: list[str] | None = None,
) -> Run:
    """A warm-up, ``empty(database)`` (the booking tables, by default; bench.growth
    keeps what it grew), then the measured run (recorded by py-spy, its collapsed
    stacks appended to ``stacks``, if given)."""
    contended = CONTENDED_SLOTS if variant == "contended" else 0

    def drive(seconds: int, tag: str) -> Run:
        cap = min(MAX_RATE * seconds, slots.left - args.connections)
        if cap <= 0:
            raise SystemExit("no slots left inside the booking horizon: use fewer --seconds")
        run = wrk(url, seconds, args.connections, slots.next, contended, slots.base, cap, tag)
        slots.advance(contended or run.used)
        return run

    drive(WARMUP_S, f"{tag}w")
    empty(database)
    before = cpu_seconds(process.pid)
    if stacks is None:
        run = drive(args.seconds, tag)
    else:
        with recording(process.pid, args.seconds) as recorded:
            run = drive(args.seconds, tag)
            stacks.append(recorded())
    cpu = cpu_seconds(process.pid) - before
    booked, _ = settled_counts(database)
    per_request = 1000 * cpu / run.answers if run.answers else None
    return replace(run, booked_rows=booked, cpu_ms_per_request=per_request)


def redis_round_trip_cpu_us(rounds: int = 5000) -> float:
    """The CPU one Redis round trip costs in our stack, in microseconds of this
    process: a GET through ``RedisCache`` (the gate, the trio-asyncio hop, redis-py),
    one after another (Redis's own CPU is not counted: it is not our process's)."""

    async def main() -> float:
        settings = RedisSettings(url=REDIS_URL, prefix=f"lomash_bench:{os.urandom(4).hex()}:")
        async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=1.0) as cache:
            key = cache.key("round-trip")

            async def get(client: Any) -> Any:
                return await client.get(key)

            for _ in range(200):  # warm: connected, the gate open
                await cache.run(get)
            started = time.process_time()
            for _ in range(rounds):
                await cache.run(get)
            return 1e6 * (time.process_time() - started) / rounds

    return trio.run(main)


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    return str(candidates[-1]) if candidates else None


_TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.MULTILINE)


def run_pgbench(
    pgbench: str,
    database: str,
    args: argparse.Namespace,
    variant: str,
    slots: Slots,
    tag: int,
) -> Run:
    contended = CONTENDED_SLOTS if variant == "contended" else 0
    parts = urlsplit(database)
    reset(database)
    with tempfile.TemporaryDirectory(prefix="lomash_pgbench_") as logs:
        variables = {
            "n": 0,
            "clients": args.connections,
            "offset": slots.next,
            "slots": contended,
            "consultants": CONSULTANTS,
            "base": slots.base,
            "tag": tag,
        }
        command = [pgbench, "-n", "-M", "prepared", "-f", str(PGBENCH_SCRIPT)]
        command += ["-c", str(args.connections), "-j", str(PGBENCH_THREADS)]
        command += ["-T", str(args.seconds), "-l", f"--log-prefix={logs}/tx"]
        for name, value in variables.items():
            command += ["-D", f"{name}={value}"]
        command += ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
        command += ["-U", parts.username or "postgres", parts.path.lstrip("/")]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        latencies: list[int] = []
        per_client: dict[str, int] = {}
        failed = 0
        for log in Path(logs).iterdir():
            for line in log.read_text().splitlines():
                client, _, latency, *_ = line.split()
                per_client[client] = per_client.get(client, 0) + 1
                if latency.isdigit():
                    latencies.append(int(latency))
                else:
                    failed += 1  # "failed", "serialization", "deadlock"
    tps = _TPS.search(done.stdout)
    complaints = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode != 0 or tps is None or not latencies:
        complaints.insert(0, f"pgbench exited {done.returncode}")
    used = max(per_client.values(), default=0) * args.connections
    slots.advance(contended or used)
    booked, keys = settled_counts(database)
    latencies.sort()
    return Run(
        requests_per_s=float(tps[1]) if tps else 0.0,
        p50_ms=percentile(latencies, 0.50) / 1000,
        p99_ms=percentile(latencies, 0.99) / 1000,
        statuses={201: booked, 409: keys - booked},
        socket_errors=failed,
        used=used,
        samples=tuple(complaints[:5]),
        booked_rows=booked,
    )


def percentile(ordered: list[int], q: float) -> float:
    if not ordered:
        return 0.0
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])
