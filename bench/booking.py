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
in it), and the ratios ours / peer and ours / pgbench; then ours' contended rate
against the floor-bound: the stack's floor (the bare ASGI app on hypercorn's trio
worker, bench/peers/floor.py, measured after the runs) plus one Redis round trip
through our adapter (its CPU, measured after the runs: ``redis_round_trip_cpu_us``).
A 5xx, any other answer than 201 / 409, a socket error, a run stopped at its request
cap, rows that do not match the 201s, or a machine already busy before the runs is
reported on stderr (with the tail of that server's output) and the exit status is 1.
``--impls ours,peer`` runs a subset; ``--profile`` records ours with py-spy during its
measured runs and prints where the time goes (bench/profile.py's summary; ``--raw DIR``
keeps the stacks). Needs ``wrk`` and ``pgbench`` (exit 2 without them) and the ``bench`` extra.

The data (seed, slot numbers, reset between runs) is in bench/booking_data.py, the
wrk and pgbench runs in bench/booking_load.py; this module starts the services,
prints the report and checks it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bench.booking_data import Slots, delete_redis_keys, seed
from bench.booking_load import (
    PGBENCH_THREADS,
    WARMUP_S,
    WRK_THREADS,
    Run,
    find_pgbench,
    redis_round_trip_cpu_us,
    run_http,
    run_pgbench,
)
from bench.http import FLOOR, REDIS_URL, Running, bench_database, server
from bench.http import wrk as wrk_floor
from bench.proc import machine_busy
from bench.profile import print_summary

# Other work on the machine above this share of its cores makes the numbers noise.
BUSY = 0.25
VARIANTS = ("distinct", "contended")
IMPLS = ("ours", "peer", "pgbench")


# --- the services -------------------------------------------------------------------


@contextmanager
def services(
    database: str, workers: int, redis_prefix: str, logs: Mapping[str, IO[bytes]]
) -> Iterator[dict[str, Running]]:
    """Ours and the peer, running on ``database``, each on the port it bound."""
    ours_env = {
        "LOMASH_DATABASE_URL": database,
        "LOMASH_REDIS_URL": REDIS_URL,
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}ours:",
        "LOMASH_LOG_LEVEL": "warning",
        # The peer has no rate limits; one client address would hit ours at once.
        "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
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
    ours = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "0"]
    peer = [sys.executable, "-m", "uvicorn", "bench.peers.fastapi_booking:app"]
    peer += ["--host", "127.0.0.1", "--port", "0", "--loop", "uvloop", "--http", "httptools"]
    peer += ["--log-level", "warning", "--no-access-log", "--workers", str(workers)]
    with ExitStack() as stack:
        running: dict[str, Running] = {}
        if "ours" in logs:
            running["ours"] = stack.enter_context(server(ours, ours_env, logs["ours"]))
        if "peer" in logs:
            running["peer"] = stack.enter_context(server(peer, peer_env, logs["peer"]))
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


def floor_bound(ours: Run, args: argparse.Namespace) -> None:
    """Print ours' contended rate against the floor-bound: what the stack's floor (the
    bare ASGI app on hypercorn's trio worker, measured now) plus one Redis round trip
    through our adapter (its CPU, measured now) allows."""
    with server([*FLOOR, "--workers", str(args.workers)], {}) as floor_server:
        wrk_floor(floor_server.url("/"), WARMUP_S, args.connections)
        floor = wrk_floor(floor_server.url("/"), args.seconds, args.connections)
    round_trip_us = redis_round_trip_cpu_us()
    # Each answer costs the floor's time plus a round trip's CPU in one of the workers.
    bound = 1 / (1 / floor.requests_per_s + round_trip_us / 1e6 / args.workers)
    print(
        f"contended  the floor {floor.requests_per_s:.0f} req/s ({args.workers} worker(s)), "
        f"one Redis round trip {round_trip_us:.0f} us CPU: floor-bound {bound:.0f} req/s; "
        f"ours/floor-bound {ours.requests_per_s / bound:.2f}x"
    )


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
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record ours with py-spy during each measured run and print where time goes "
        "(the sampling slows ours: compare its numbers with an unprofiled run's)",
    )
    parser.add_argument(
        "--raw", type=Path, help="with --profile: keep each variant's collapsed stacks here"
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
            database = stack.enter_context(bench_database(seed))
            running = stack.enter_context(services(database, args.workers, redis_prefix, logs))
            profiles: dict[str, str] = {}
            results = measure(chosen, running, pgbench, database, args, slots, profiles)
        # The servers have stopped: their output is complete.
        problems = report(results, args)
        if ("contended", "ours") in results:
            floor_bound(results[("contended", "ours")], args)
        for variant, raw in profiles.items():
            print_summary(f"ours, {variant} (py-spy)", raw)
            if args.raw:
                args.raw.mkdir(parents=True, exist_ok=True)
                (args.raw / f"{variant}.txt").write_text(raw)
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
    running: dict[str, Running],
    pgbench: str | None,
    database: str,
    args: argparse.Namespace,
    slots: Slots,
    profiles: dict[str, str],
) -> dict[tuple[str, str], Run]:
    """Every variant of every implementation chosen; with ``--profile``, ours' collapsed
    stacks per variant go to ``profiles``."""
    results: dict[tuple[str, str], Run] = {}
    tag = 0
    for variant in VARIANTS:
        for impl in chosen:
            tag += 1
            if impl == "pgbench":
                assert pgbench is not None
                results[(variant, impl)] = run_pgbench(pgbench, database, args, variant, slots, tag)
                continue
            url = running[impl].url("/v1/appointments")
            stacks: list[str] | None = [] if args.profile and impl == "ours" else None
            results[(variant, impl)] = run_http(
                url, database, running[impl].process, args, variant, slots, f"r{tag}", stacks=stacks
            )
            if stacks:
                profiles[variant] = stacks[0]
    return results


if __name__ == "__main__":
    main()
