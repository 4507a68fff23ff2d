"""Booking benchmark: ``POST /v1/appointments``, ours vs a FastAPI peer vs pgbench, side by side.

    python -m bench.booking [--seconds 10] [--connections 50] [--workers 1]

One throwaway database (migrated, one showroom, ``CONSULTANTS`` consultants working
24 hours every day), both services started on it, then for each variant:

- ``distinct``: every request books a slot no other request asks for (unique
  Idempotency-Key each): nearly every answer should be 201;
- ``contended``: every request asks for one of ``CONTENDED_SLOTS`` slots: after the
  first few, every answer should be 409 slot_taken.

Each implementation gets a warm-up, then a measured run of ``--seconds`` with
``--connections`` connections; before each measured run the booking tables are
emptied and Postgres checkpoints, so every run starts from the same state:

1. ours: ``python -m service serve`` (notification delivery off: the peer has none;
   the outbox relay still runs and is charged to ours);
2. the peer (bench/peers/fastapi_booking.py): FastAPI on uvicorn (uvloop, httptools),
   asyncpg and redis.asyncio, doing what the endpoint must do and no more;
3. pgbench running the peer's transaction (bench/booking.pgbench.sql) from C with
   prepared statements and ``--connections`` database connections: the ceiling
   for the database part (no HTTP, no Redis, no Python). Its p50 / p99 come from
   its per-transaction log (``-l``): each transaction's latency, sorted.

wrk drives HTTP with bench/booking.lua. Every run uses its own slot numbers (see
there), all inside the booking horizon, so nothing collides with an earlier run's
Redis locks or anything ours may cache. Prints req/s, p50, p99, the share of
201 / 409 / other answers, the appointment rows in the database after the run, the
server's CPU per request (the process and its children, from /proc: Postgres is not
in it), and the ratios ours / peer and ours / pgbench. A 5xx, any other answer than
201 / 409, a socket error, a run stopped at its request cap, rows that do not match the
201s, or a machine already busy before the runs is reported on stderr (with the tail of
that server's output) and the exit status is 1. ``--impls ours,peer`` runs a subset.
Needs ``wrk`` and ``pgbench`` (exit 2 without them) and the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import asyncpg
import redis

from bench.http import REDIS_URL, bench_database, free_port, server

HERE = Path(__file__).resolve().parent
LUA = HERE / "booking.lua"
PGBENCH_SCRIPT = HERE / "booking.pgbench.sql"
CONSULTANTS = 100  # ids bench-c00 .. bench-c99
CONTENDED_SLOTS = 4
WRK_THREADS = 2
PGBENCH_THREADS = 2
WARMUP_S = 2
# A run stops after this many answers per second of --seconds: bounded in count, and
# the slot numbers it may use stay inside the horizon.
MAX_RATE = 15_000
# Ours refuses bookings further ahead than BookingSettings.horizon_days (180).
HORIZON = timedelta(days=175)
# Answers still in flight when wrk stops are committed afterwards: wait for the row
# count to settle, this long at most.
SETTLE_S = 3.0
# Other work on the machine above this share of its cores makes the numbers noise.
BUSY = 0.25
VARIANTS = ("distinct", "contended")
IMPLS = ("ours", "peer", "pgbench")

# The order the booking transaction takes its locks in: a TRUNCATE meeting a late
# transaction then waits for it instead of deadlocking with it.
_RESET = """
SET lock_timeout = '10s';
TRUNCATE idempotency_keys, appointments, outbox;
CHECKPOINT;
"""
_COUNT = "SELECT (SELECT count(*) FROM appointments), (SELECT count(*) FROM idempotency_keys)"


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


class Slots:
    """Hands out slot numbers: slot g is consultant g % CONSULTANTS at ``base`` plus
    g // CONSULTANTS hours. Each run takes the numbers after the previous run's."""

    def __init__(self, now: datetime) -> None:
        first = (now + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
        self.base = int(first.timestamp())
        hours = int((now + HORIZON - first).total_seconds()) // 3600
        self.total = hours * CONSULTANTS
        self.next = 0

    @property
    def left(self) -> int:
        return self.total - self.next

    def advance(self, used: int) -> None:
        # The next run starts on a fresh hour: no slot of it shares an hour with this one.
        hours = -(-used // CONSULTANTS)
        self.next += hours * CONSULTANTS


# --- the database and Redis ---------------------------------------------------------


# One showroom; consultants bench-c00.. working 00:00-00:00 (until midnight: all 24
# hours bookable) every day of the week.
_SEED = f"""
INSERT INTO showrooms (id, name, address, city, postcode)
VALUES ('bench-sr', 'Bench Showroom', '1 High St', 'Leeds', 'LS1 1AA');
INSERT INTO consultants (id, name, email, showroom_id, specialisations)
SELECT 'bench-c' || lpad(n::text, 2, '0'), 'Consultant ' || n, 'c' || n || '@example.com',
    'bench-sr', '{{KITCHEN,BEDROOM}}'
FROM generate_series(0, {CONSULTANTS - 1}) AS n;
INSERT INTO consultant_hours (consultant_id, weekday, starts, ends)
SELECT id, weekday, '00:00', '00:00' FROM consultants, generate_series(0, 6) AS weekday;
"""


async def _seed(url: str) -> None:
    await _execute(url, _SEED)


async def _execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _settled_counts(url: str) -> tuple[int, int]:
    """(appointments, idempotency keys) once two reads a moment apart agree."""
    connection = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + SETTLE_S
        previous = None
        while True:
            row = await connection.fetchrow(_COUNT)
            assert row is not None
            counts = (int(row[0]), int(row[1]))
            if counts == previous or time.monotonic() > deadline:
                return counts
            previous = counts
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


def reset(url: str) -> None:
    """Empty the booking tables once the answers still in flight have committed."""
    asyncio.run(_settled_counts(url))
    asyncio.run(_execute(url, _RESET))


def delete_redis_keys(prefix: str) -> None:
    with redis.Redis.from_url(REDIS_URL) as client, client.pipeline(transaction=False) as pipe:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            pipe.unlink(key)
        pipe.execute()


# --- measuring ----------------------------------------------------------------------


def machine_busy(seconds: float) -> float:
    """The share of all cores' time spent working during ``seconds``, from /proc/stat."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    return 1 - (idle_after - idle) / max(1, total_after - total)


def cpu_seconds(root: int) -> float:
    """User + system CPU of process ``root`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    tree = {root}
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return sum(used.get(pid, 0.0) for pid in tree)


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
) -> Run:
    contended = CONTENDED_SLOTS if variant == "contended" else 0

    def drive(seconds: int, tag: str) -> Run:
        cap = min(MAX_RATE * seconds, slots.left - args.connections)
        if cap <= 0:
            raise SystemExit("no slots left inside the booking horizon: use fewer --seconds")
        run = wrk(url, seconds, args.connections, slots.next, contended, slots.base, cap, tag)
        slots.advance(contended or run.used)
        return run

    drive(WARMUP_S, f"{tag}w")
    reset(database)
    before = cpu_seconds(process.pid)
    run = drive(args.seconds, tag)
    cpu = cpu_seconds(process.pid) - before
    booked, _ = asyncio.run(_settled_counts(database))
    per_request = 1000 * cpu / run.answers if run.answers else None
    return replace(run, booked_rows=booked, cpu_ms_per_request=per_request)


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
    booked, keys = asyncio.run(_settled_counts(database))
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


# --- the services -------------------------------------------------------------------


@contextmanager
def services(
    database: str, workers: int, redis_prefix: str, logs: Mapping[str, IO[bytes]]
) -> Iterator[dict[str, tuple[int, subprocess.Popen[bytes]]]]:
    """Ours and the peer, running on ``database``: name -> (port, process)."""
    ours_port, peer_port = free_port(), free_port()
    ours_env = {
        "LOMASH_DATABASE_URL": database,
        "LOMASH_REDIS_URL": REDIS_URL,
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}ours:",
        "LOMASH_LOG_LEVEL": "warning",
        "LOMASH_WORKERS": str(workers),
        # No job workers: notification delivery is not part of a booking, and the
        # peer has none. The outbox relay still runs.
        "LOMASH_JOBS_QUEUES": "",
    }
    peer_env = {
        "DATABASE_URL": database,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": f"{redis_prefix}peer:",
    }
    ours = [sys.executable, "-m", "service", "serve", "--port", str(ours_port)]
    peer = [sys.executable, "-m", "uvicorn", "bench.peers.fastapi_booking:app"]
    peer += ["--port", str(peer_port), "--loop", "uvloop", "--http", "httptools"]
    peer += ["--log-level", "warning", "--no-access-log", "--workers", str(workers)]
    with ExitStack() as stack:
        running: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        if "ours" in logs:
            process = stack.enter_context(server(ours, ours_env, ours_port, logs["ours"]))
            running["ours"] = (ours_port, process)
        if "peer" in logs:
            process = stack.enter_context(server(peer, peer_env, peer_port, logs["peer"]))
            running["peer"] = (peer_port, process)
        yield running


# --- the report ---------------------------------------------------------------------


def report(results: dict[tuple[str, str], Run], args: argparse.Namespace) -> list[str]:
    """Print the table; return the problems found, one line each."""
    pgbench = any(impl == "pgbench" for _, impl in results)
    print(
        f"Booking benchmark, POST /v1/appointments: {args.seconds}s per run after a "
        f"{WARMUP_S}s warm-up, {args.connections} connections, {args.workers} worker(s) "
        f"each; wrk -t{WRK_THREADS} on loopback"
        + (f"; pgbench -c{args.connections} -j{PGBENCH_THREADS} -M prepared" if pgbench else "")
        + "; the machine's cores shared by all"
    )
    print(
        f"{'variant':<10} {'impl':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'201 %':>6} {'409 %':>6} {'other':>6} {'5xx':>6} {'db rows':>8} {'CPU ms/req':>10}"
    )
    problems: list[str] = []
    for variant in VARIANTS:
        for impl in IMPLS:
            r = results.get((variant, impl))
            if r is None:
                continue
            cpu = "-" if r.cpu_ms_per_request is None else f"{r.cpu_ms_per_request:.2f}"
            print(
                f"{variant:<10} {impl:<8} {r.requests_per_s:>8.0f} {r.p50_ms:>8.2f} "
                f"{r.p99_ms:>8.2f} {r.share(201):>6.1f} {r.share(409):>6.1f} {r.other:>6} "
                f"{r.server_errors:>6} {r.booked_rows:>8} {cpu:>10}"
            )
            problems += check(variant, impl, r, args.connections)
        ours = results.get((variant, "ours"))
        for other in ("peer", "pgbench"):
            them = results.get((variant, other))
            if ours is None or them is None or not them.requests_per_s:
                continue
            rate = ours.requests_per_s / them.requests_per_s
            p50 = ours.p50_ms / max(them.p50_ms, 1e-9)
            p99 = ours.p99_ms / max(them.p99_ms, 1e-9)
            print(
                f"{variant:<10} ours/{other}: throughput {rate:.2f}x, "
                f"p50 {p50:.2f}x, p99 {p99:.2f}x"
            )
    print("Ratios: throughput higher is better for ours, latency lower.")
    if pgbench:
        print(
            "pgbench runs the database part only (no HTTP, Redis or Python); in "
            "'contended' it meets every conflict in Postgres, where the services mostly "
            "answer 409 from the Redis lock."
        )
    return problems


def check(variant: str, impl: str, r: Run, connections: int) -> list[str]:
    name = f"{impl} {variant}"
    found: list[str] = []
    if r.server_errors:
        fives = {s: n for s, n in sorted(r.statuses.items()) if s >= 500}
        found.append(f"{name}: {r.server_errors} answers were 5xx {fives}")
    if r.other - r.server_errors > 0:
        others = {s: n for s, n in sorted(r.statuses.items()) if s not in (201, 409) and s < 500}
        found.append(
            f"{name}: {sum(others.values())} answers were neither 201, 409 nor 5xx {others}"
        )
    if r.socket_errors:
        found.append(f"{name}: {r.socket_errors} socket errors, timeouts or failures")
    if r.capped:
        found.append(f"{name}: stopped at the request cap: its req/s is understated")
    created = r.statuses.get(201, 0)
    if impl != "pgbench" and not created <= r.booked_rows <= created + connections:
        found.append(f"{name}: {created} answers 201 but {r.booked_rows} rows in the database")
    if variant == "distinct" and r.share(201) < 99.0:
        found.append(f"{name}: only {r.share(201):.1f}% booked although every slot was free")
    found += [f"{name}: {sample}" for sample in r.samples]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="Booking benchmark vs a FastAPI peer and pgbench")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--impls", default=",".join(IMPLS), help="which to run, comma-separated (default: all)"
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.impls.split(",") if name.strip()]
    if not chosen or not set(chosen) <= set(IMPLS):
        parser.error(f"--impls: choose from {', '.join(IMPLS)}")
    if args.connections < max(WRK_THREADS, PGBENCH_THREADS):
        parser.error(f"--connections: at least {max(WRK_THREADS, PGBENCH_THREADS)}")
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        sys.exit(2)
    pgbench = find_pgbench()
    if pgbench is None and "pgbench" in chosen:
        print("pgbench is not installed (apt-get install postgresql-client)", file=sys.stderr)
        sys.exit(2)

    redis_prefix = f"lomash_bench:{os.urandom(4).hex()}:"
    slots = Slots(datetime.now(UTC))
    busy = machine_busy(1.0)
    with ExitStack() as files:
        logs = {
            name: files.enter_context(tempfile.TemporaryFile(prefix=f"lomash_{name}_"))
            for name in ("ours", "peer")
            if name in chosen
        }
        with ExitStack() as stack:
            stack.callback(delete_redis_keys, redis_prefix)
            database = stack.enter_context(bench_database(_seed))
            running = stack.enter_context(services(database, args.workers, redis_prefix, logs))
            results = measure(chosen, running, pgbench, database, args, slots)
        # The servers have stopped: their output is complete.
        problems = report(results, args)
        print(f"The machine was {busy:.0%} busy before the first run.")
        if busy > BUSY:
            problems.append(f"machine was {busy:.0%} busy before the runs: numbers are unreliable")
        if problems:
            print(
                "\n!!! PROBLEMS (the numbers above may not mean what they seem):", file=sys.stderr
            )
            for problem in problems:
                print(f"!!! {problem}", file=sys.stderr)
            for name, log in logs.items():
                if any(p.startswith(f"{name} ") for p in problems):
                    log.seek(0)
                    tail = log.read().decode(errors="replace").splitlines()[-20:]
                    print(f"--- the last lines {name} printed:", file=sys.stderr)
                    print("\n".join(tail), file=sys.stderr)
    if problems:
        sys.exit(1)


def measure(
    chosen: list[str],
    running: dict[str, tuple[int, subprocess.Popen[bytes]]],
    pgbench: str | None,
    database: str,
    args: argparse.Namespace,
    slots: Slots,
) -> dict[tuple[str, str], Run]:
    results: dict[tuple[str, str], Run] = {}
    tag = 0
    for variant in VARIANTS:
        for impl in chosen:
            tag += 1
            if impl == "pgbench":
                assert pgbench is not None
                results[(variant, impl)] = run_pgbench(pgbench, database, args, variant, slots, tag)
                continue
            port, process = running[impl]
            url = f"http://127.0.0.1:{port}/v1/appointments"
            results[(variant, impl)] = run_http(
                url, database, process, args, variant, slots, f"r{tag}"
            )
    return results


if __name__ == "__main__":
    main()
