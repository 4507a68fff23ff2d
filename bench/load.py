"""Load test: bookings answered within the target while visitors read, at 15 users and
through a burst of 80.

    python -m bench.load [--url URL [--allow-remote]] [--workers 1] [--p95-ms 1000]
                         [--users 15] [--burst-users 80] [--warmup-s 10] [--steady-s 30]
                         [--burst-s 20] [--recovery-s 20] [--wait-min-s 0.2] [--wait-max-s 1]

The shape (locust, headless): a warm-up ramping to ``--users``, ``--users`` steady, a
burst to ``--burst-users`` (spawned at once), back to ``--users``; about 80 s by
default. The visitors (bench/locustfile.py) mostly read (showrooms, products, a week
of availability) and sometimes book a free slot they were offered, in any of the
showrooms, some days ahead. Prints p50 / p95 / p99 and the outcomes per phase and
request kind, then checks:

- the p95 of ``POST /v1/appointments`` in each phase after the warm-up is below
  ``--p95-ms`` (1 s);
- nothing went wrong: every read 200, every booking 201 (or 202, accepted while
  Postgres is down) or ``409 slot_taken`` (another visitor got the slot first: an
  expected answer under contention, counted on its own); any other status or a
  connection error is an error;
- some bookings were made, and the run ended when its shape did.

Exit status 0 when every check passes; 1 with one line per missed target on stderr
(and the tail of the service's output, when it is ours); 2 for bad arguments.

Without ``--url`` it starts the service itself on loopback, as the other benches do
(bench/http.py): a fresh database on the local Postgres, migrated and loaded with the
demo seed (``lomash serve --seed``), a Redis key prefix of its own (deleted
afterwards), ``--workers`` processes, rate limits off (every visitor comes from
127.0.0.1); the database is dropped at the end. ``--url`` runs against a deployment
that is already serving: only a loopback address unless ``--allow-remote`` (a staging
deployment: it gets real bookings, and its per-address rate limits apply).

locust runs in a process of its own (``python -m bench.locustfile``): its gevent
monkey-patching stays there.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from bench.booking_data import delete_redis_keys
from bench.http import REDIS_URL, REPO, bench_database, server

BOOKING = "booking"
KINDS = ("showrooms", "products", "availability", BOOKING)
EXPECTED = frozenset({"ok", "booked", "accepted", "slot_taken"})
MADE = ("booked", "accepted")
UNCHECKED_PHASES = frozenset({"warmup"})
SLACK_S = 60.0  # the locust process gets the shape's length plus this, then is stopped


@dataclass(frozen=True, slots=True)
class Stats:
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    outcomes: dict[str, int]

    @property
    def errors(self) -> int:
        return sum(n for name, n in self.outcomes.items() if name not in EXPECTED)


def percentile(ordered: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = max(math.ceil(share / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def stats(latencies: Sequence[float], outcomes: dict[str, int]) -> Stats:
    ordered = sorted(latencies)
    return Stats(
        len(ordered),
        percentile(ordered, 50),
        percentile(ordered, 95),
        percentile(ordered, 99),
        ordered[-1] if ordered else 0.0,
        dict(outcomes),
    )


def table(result: dict[str, Any]) -> dict[tuple[str, str], Stats]:
    """(phase, kind) -> Stats, with ("all", kind) over every phase."""
    found: dict[tuple[str, str], Stats] = {}
    latencies: dict[str, dict[str, list[float]]] = result["latencies_ms"]
    outcomes: dict[str, dict[str, dict[str, int]]] = result["outcomes"]
    names = [p["name"] for p in result["phases"]]
    for phase in [*names, *(p for p in latencies if p not in names)]:
        for kind in KINDS:
            if kind in latencies.get(phase, {}):
                found[(phase, kind)] = stats(latencies[phase][kind], outcomes[phase][kind])
    for kind in KINDS:
        every = [ms for phase in latencies.values() for ms in phase.get(kind, [])]
        counts: dict[str, int] = {}
        for phase_outcomes in outcomes.values():
            for name, n in phase_outcomes.get(kind, {}).items():
                counts[name] = counts.get(name, 0) + n
        if every:
            found[("all", kind)] = stats(every, counts)
    return found


def report(result: dict[str, Any], rows: dict[tuple[str, str], Stats], p95_ms: float) -> None:
    users = {p["name"]: p["users"] for p in result["phases"]}
    plan = ", ".join(
        f"{p['name']} {p['seconds']:g} s at {p['users']} users" for p in result["phases"]
    )
    print(f"Load test: {plan}; booking p95 target < {p95_ms:g} ms")
    print(
        f"{'phase':<9} {'users':>5} {'kind':<13} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'made':>6} {'409 taken':>9} {'errors':>6}"
    )
    for (phase, kind), s in rows.items():
        made = sum(s.outcomes.get(name, 0) for name in MADE) if kind == BOOKING else "-"
        taken = s.outcomes.get("slot_taken", 0) if kind == BOOKING else "-"
        print(
            f"{phase:<9} {users.get(phase, '-'):>5} {kind:<13} {s.requests:>8} "
            f"{s.p50_ms:>8.1f} {s.p95_ms:>8.1f} {s.p99_ms:>8.1f} {s.max_ms:>8.1f} "
            f"{made:>6} {taken:>9} {s.errors:>6}"
        )
    booking = rows.get(("all", BOOKING))
    if booking is not None:
        o = booking.outcomes
        print(
            f"bookings: {o.get('booked', 0)} booked (201), {o.get('accepted', 0)} accepted "
            f"(202), {o.get('slot_taken', 0)} slot_taken (409, expected), "
            f"{booking.errors} errors"
        )
    if result.get("cpu_warning"):
        print("note: the load generator's CPU went above 90%: its latencies may be inflated")


def check(result: dict[str, Any], rows: dict[tuple[str, str], Stats], p95_ms: float) -> list[str]:
    """The targets missed, one line each (none: passed)."""
    problems: list[str] = []
    for (phase, kind), s in rows.items():
        if phase == "all":
            continue
        if kind == BOOKING and phase not in UNCHECKED_PHASES and s.p95_ms >= p95_ms:
            problems.append(
                f"booking p95 in {phase} is {s.p95_ms:.1f} ms: the target is < {p95_ms:g} ms"
            )
        errors = {name: n for name, n in sorted(s.outcomes.items()) if name not in EXPECTED}
        if errors:
            problems.append(f"{kind} in {phase}: {sum(errors.values())} errors {errors}")
    booking = rows.get(("all", BOOKING))
    if booking is None or not any(booking.outcomes.get(name) for name in MADE):
        problems.append("no booking was made: nothing to measure")
    if result.get("timed_out"):
        problems.append("the run did not end with its shape (stopped)")
    problems += [f"sample: {sample}" for sample in result.get("samples", [])[:5] if problems]
    return problems


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_locust(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The locust process's record of the run (bench/locustfile.py)."""
    with tempfile.TemporaryDirectory(prefix="lomash_load_") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", "bench.locustfile", "--url", url, "--out", str(out)]
        for flag in (
            "users",
            "burst_users",
            "warmup_s",
            "steady_s",
            "burst_s",
            "recovery_s",
            "wait_min_s",
            "wait_max_s",
            "days_ahead",
        ):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        total_s = args.warmup_s + args.steady_s + args.burst_s + args.recovery_s
        try:
            subprocess.run(command, cwd=REPO, timeout=total_s + SLACK_S, check=False)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"the locust process ran past {total_s + SLACK_S:.0f} s") from None
        if not out.exists():
            raise SystemExit("the locust process wrote no result (see its output above)")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


async def _no_seed(url: str) -> None:
    """The demo seed is loaded by ``lomash serve --seed`` (its parent, with workers)."""


@contextmanager
def own_service(workers: int, output: IO[bytes]) -> Iterator[str]:
    """``lomash serve`` on loopback with a fresh database and Redis prefix: its URL."""
    prefix = f"lomash_load:{secrets.token_hex(4)}:"
    with ExitStack() as stack:
        stack.callback(delete_redis_keys, prefix)
        database = stack.enter_context(bench_database(_no_seed))
        env = {
            "LOMASH_DATABASE_URL": database,
            "LOMASH_REDIS_URL": REDIS_URL,
            "LOMASH_REDIS_PREFIX": prefix,
            "LOMASH_LOG_LEVEL": "warning",
            "LOMASH_WORKERS": str(workers),
            # Every visitor comes from 127.0.0.1: per-address limits would refuse them.
            "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
        }
        command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
        command += ["--port", "0", "--seed"]
        running = stack.enter_context(server(command, env, output))
        yield running.url("")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description="Load test: booking p95 under reads and a burst"
    )
    parser.add_argument("--url", help="a serving deployment (default: start our own)")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a --url that is not loopback"
    )
    parser.add_argument("--workers", type=int, default=1, help="our own service's workers")
    parser.add_argument("--p95-ms", type=float, default=1000.0, help="booking p95 target")
    parser.add_argument("--users", type=int, default=15)
    parser.add_argument("--burst-users", type=int, default=80)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--steady-s", type=float, default=30.0)
    parser.add_argument("--burst-s", type=float, default=20.0)
    parser.add_argument("--recovery-s", type=float, default=20.0)
    parser.add_argument("--wait-min-s", type=float, default=0.2, help="a visitor's think time")
    parser.add_argument("--wait-max-s", type=float, default=1.0)
    parser.add_argument(
        "--days-ahead", type=int, default=150, help="bookings go up to this many days ahead"
    )
    args = parser.parse_args(argv)
    if args.url is not None:
        if urlsplit(args.url).scheme not in ("http", "https"):
            parser.error(f"--url: an http:// or https:// URL, got {args.url!r}")
        if not args.allow_remote and not is_loopback(args.url):
            parser.error(f"--url {args.url}: not a loopback address (--allow-remote to load it)")
    if args.users < 1 or args.burst_users < 1 or args.workers < 1:
        parser.error("--users, --burst-users and --workers: at least 1")
    if args.wait_min_s < 0 or args.wait_max_s < args.wait_min_s:
        parser.error("--wait-min-s / --wait-max-s: 0 <= min <= max")
    if not 1 <= args.days_ahead <= 170:
        parser.error("--days-ahead: 1 to 170 (bookings close 180 days ahead)")
    for name in ("warmup_s", "steady_s", "burst_s", "recovery_s"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')}: at least 0")
    if args.steady_s + args.burst_s + args.recovery_s <= 0:
        parser.error("--steady-s, --burst-s, --recovery-s: at least one above 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryFile(prefix="lomash_load_service_") as log:
        if args.url is None:
            with own_service(args.workers, log) as url:
                print(f"service: {url} ({args.workers} worker(s), fresh database, demo seed)")
                sys.stdout.flush()
                result = run_locust(url, args)
        else:
            print(f"service: {args.url}")
            sys.stdout.flush()
            result = run_locust(args.url, args)
        rows = table(result)
        report(result, rows, args.p95_ms)
        problems = check(result, rows, args.p95_ms)
        log.seek(0)
        said = log.read().decode(errors="replace").splitlines()  # warnings and worse
        if said:
            out = sys.stderr if problems else sys.stdout
            print(
                f"--- our service logged {len(said)} lines (warnings or worse); the last:", file=out
            )
            print("\n".join(line[:400] for line in said[-10:]), file=out)
        if problems:
            print("\nFAILED: a load target was missed", file=sys.stderr)
            for problem in problems:
                print(f"!!! {problem}", file=sys.stderr)
            sys.exit(1)
    print("PASSED: every load target met")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
