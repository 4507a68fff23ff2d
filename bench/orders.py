"""Orders benchmark: ``POST /v1/orders``, ours vs a FastAPI peer, against one local Stripe.

    python -m bench.orders [--orders 300] [--concurrency 8] [--warmup 30]

One localstripe on loopback (devservers.local_stripe: pure Python, one process), one
throwaway database (migrated, one product on sale), and both services on them:

1. ours: ``python -m service serve`` (one worker, no job workers) with
   ``LOMASH_STRIPE_SECRET_KEY`` / ``_WEBHOOK_SECRET`` / ``_API_BASE`` pointing at the
   local Stripe: one transaction placing the order at today's prices, a PaymentIntent
   (the Stripe SDK's async client), a second transaction recording it and the answer;
2. the peer (bench/peers/fastapi_orders.py): FastAPI on uvicorn (uvloop, httptools),
   asyncpg and stripe-python's ``StripeClient`` on its ``HTTPXClient``, doing the same
   two transactions on the same tables around the same PaymentIntent create;
3. the Stripe floor: the same number of PaymentIntent creates sent straight to the
   local Stripe by the same clients: what localstripe does alone.

Each gets ``--warmup`` requests, then the order tables are emptied, Postgres
checkpoints and the local Stripe is flushed (localstripe pickles its whole store to
disk after every create: a create costs more the more it holds, so each run starts
from an empty one), then ``--orders`` requests from ``--concurrency`` clients (httpx, a
thread each; bench/orders_load.py), each order with an Idempotency-Key of its own and
the same body. Prints orders/s, p50, p99, the statuses, the order rows written (and
those with their intent, and the answers stored), the server's CPU per order and the
local Stripe's CPU (share of one core) meanwhile, and the ratios ours / peer. With
the two within 10 % of each other, it says localstripe is the likely bottleneck of
both. A non-201 answer (200 for the floor), a lost request (never sent within
``RUN_BOUND_S``, or unanswered), a 201 whose body is not the order, a PaymentIntent
answered twice, or rows not matching the 201s is reported on stderr (with the tail of
that server's output) and the exit status is 1. Everything runs on 127.0.0.1; the
database, our Redis keys and the processes are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import IO
from urllib.parse import urlsplit

import structlog

from bench.booking_data import delete_redis_keys
from bench.http import REDIS_URL, Running, bench_database, server
from bench.orders_load import (
    STRIPE_KEY,
    Load,
    Orders,
    Rows,
    StripeFloor,
    count_rows,
    drive,
    flush_stripe,
    reset,
    seed,
)
from bench.proc import cpu_seconds, listening_ports, machine_busy, process_tree
from bench.slow import tail
from devservers import local_stripe

RUN_BOUND_S = 120.0  # a measured run, or a warm-up, is over by then
STRIPE_START_S = 30.0
CLOSE = 0.10  # ours and the peer this close: localstripe is likely what limits both
BUSY = 0.25
FLOOR = "stripe floor"
IMPLS = (FLOOR, "ours", "peer")


@contextmanager
def services(
    database: str, stripe_url: str, redis_prefix: str, logs: Mapping[str, IO[bytes]]
) -> Iterator[dict[str, Running]]:
    """Ours and the peer, on ``database`` and the local Stripe, each on the port it bound."""
    ours_env = {
        "LOMASH_DATABASE_URL": database,
        "LOMASH_REDIS_URL": REDIS_URL,
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}ours:",
        "LOMASH_LOG_LEVEL": "warning",
        # The peer has no rate limits; one client address would hit ours at once.
        "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",
        "LOMASH_WORKERS": "1",
        "LOMASH_JOBS_QUEUES": "",  # no job workers: the peer has none
        "LOMASH_STRIPE_SECRET_KEY": STRIPE_KEY,
        "LOMASH_STRIPE_WEBHOOK_SECRET": "whsec_bench",
        "LOMASH_STRIPE_API_BASE": stripe_url,
    }
    peer_env = {
        "DATABASE_URL": database,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": stripe_url,
    }
    ours = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "0"]
    peer = [sys.executable, "-m", "uvicorn", "bench.peers.fastapi_orders:app"]
    peer += ["--host", "127.0.0.1", "--port", "0", "--loop", "uvloop", "--http", "httptools"]
    peer += ["--log-level", "warning", "--no-access-log", "--workers", "1"]
    with ExitStack() as stack:
        yield {
            "ours": stack.enter_context(server(ours, ours_env, logs["ours"])),
            "peer": stack.enter_context(server(peer, peer_env, logs["peer"])),
        }


@dataclass(frozen=True, slots=True)
class LocalStripe:
    url: str
    pid: int | None  # None: not found

    @classmethod
    def at(cls, url: str) -> LocalStripe:
        """The local Stripe at ``url``: the child of this process listening on its port."""
        port, me = urlsplit(url).port, os.getpid()
        tree = process_tree(me) - {me}
        return cls(url, next((p for p in tree if port in listening_ports(p)), None))


@dataclass(frozen=True, slots=True)
class Result:
    load: Load
    ok: int  # the status every answer should have
    intents: int  # distinct PaymentIntents answered
    rows: Rows | None  # the floor: none
    server_cpu_ms: float | None  # per answer; the server's process tree, Postgres not in it
    stripe_busy: float | None  # the local Stripe's CPU seconds per second of the run

    @property
    def rate(self) -> float:
        return self.load.ok(self.ok) / max(self.load.seconds, 1e-9)

    def ms(self, q: float) -> float:
        return self.load.phase.quantile_ms(q) or 0.0


def measure(
    make: Callable[[str], Orders | StripeFloor],
    ok: int,
    args: argparse.Namespace,
    stripe: LocalStripe,
    database: str | None = None,
    server_pid: int | None = None,
) -> Result:
    """Warm-up, the tables emptied, then the measured run of ``make(tag)``'s requests."""
    tag = os.urandom(4).hex()
    drive(make(f"{tag}w"), count=args.warmup, clients=args.concurrency, bound_s=RUN_BOUND_S)
    if database is not None:
        asyncio.run(reset(database))
    flush_stripe(stripe.url)
    send = make(tag)
    server_before = cpu_seconds(server_pid) if server_pid else 0.0
    stripe_before = cpu_seconds(stripe.pid) if stripe.pid else 0.0
    load = drive(send, count=args.orders, clients=args.concurrency, bound_s=RUN_BOUND_S)
    server_cpu = cpu_seconds(server_pid) - server_before if server_pid else None
    stripe_cpu = cpu_seconds(stripe.pid) - stripe_before if stripe.pid else None
    answered = max(1, len(load.phase.answers))
    return Result(
        load,
        ok,
        len(send.intents),
        asyncio.run(count_rows(database)) if database is not None else None,
        None if server_cpu is None else 1000 * server_cpu / answered,
        None if stripe_cpu is None else stripe_cpu / max(load.seconds, 1e-9),
    )


def check(name: str, r: Result) -> list[str]:
    found: list[str] = []
    statuses = r.load.phase.statuses
    others = {s: n for s, n in sorted(statuses.items()) if s not in (0, r.ok)}
    if others:
        sample = next(a.error for a in r.load.phase.answers if a.status in others)
        found.append(f"{name}: answers other than {r.ok} {others}, e.g. {sample or '(no body)'}")
    if r.load.lost:
        errors = sorted({a.error for a in r.load.phase.answers if a.status == 0})
        found.append(
            f"{name}: {r.load.lost} of {r.load.wanted} requests lost (sent {r.load.sent} "
            f"within {RUN_BOUND_S:g} s; no answer: {statuses[0]} {errors})"
        )
    wrong = [a.error for a in r.load.phase.answers if a.status == r.ok and a.error]
    if wrong:
        found.append(f"{name}: {len(wrong)} answers {r.ok} with a wrong body, e.g. {wrong[0]}")
    created = statuses[r.ok]
    if r.intents != created:
        found.append(f"{name}: {created} answers {r.ok} but {r.intents} distinct PaymentIntents")
    if r.rows is not None and {r.rows.orders, r.rows.with_intent, r.rows.lines} != {created}:
        found.append(f"{name}: {created} answers 201 but in the database {r.rows}")
    if r.rows is not None and r.rows.answers != created:
        found.append(f"{name}: {created} answers 201 but {r.rows.answers} stored answers")
    return found


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: dict[str, Result], args: argparse.Namespace, busy: float) -> list[str]:
    """Print the table; return the problems found, one line each."""
    print(
        f"Orders benchmark, POST /v1/orders: {args.orders} orders after {args.warmup} "
        f"warm-up each, {args.concurrency} clients (httpx, a thread each) on loopback, one "
        f"worker each, one localstripe for all; {os.cpu_count()} cores shared by all "
        f"({busy:.0%} busy before the runs)"
    )
    print(
        f"{'impl':<13} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'statuses':<18} "
        f"{'orders':>7} {'+intent':>7} {'lines':>6} {'CPU ms/order':>12} {'stripe CPU':>10}"
    )
    problems: list[str] = []
    for name, r in results.items():
        statuses = " ".join(
            f"{status or 'none'}:{n}" for status, n in sorted(r.load.phase.statuses.items())
        )
        rows = ["-"] * 3 if r.rows is None else [r.rows.orders, r.rows.with_intent, r.rows.lines]
        stripe = "-" if r.stripe_busy is None else f"{100 * r.stripe_busy:.0f} %"
        print(
            f"{name:<13} {r.rate:>9.1f} {r.ms(0.5):>8.2f} {r.ms(0.99):>8.2f} {statuses:<18} "
            f"{rows[0]:>7} {rows[1]:>7} {rows[2]:>6} {_cell(r.server_cpu_ms, '.2f'):>12} "
            f"{stripe:>10}"
        )
        problems += check(name, r)
    ours, peer, floor = results["ours"], results["peer"], results[FLOOR]
    rate = ours.rate / max(peer.rate, 1e-9)
    print(
        f"ours/peer: throughput {rate:.2f}x, p50 {ours.ms(0.5) / max(peer.ms(0.5), 1e-9):.2f}x, "
        f"p99 {ours.ms(0.99) / max(peer.ms(0.99), 1e-9):.2f}x "
        "(throughput: higher is better for ours; latency: lower)"
    )
    print(
        f"share of the Stripe floor's orders/s: ours {ours.rate / max(floor.rate, 1e-9):.0%}, "
        f"peer {peer.rate / max(floor.rate, 1e-9):.0%}"
    )
    if abs(rate - 1) <= CLOSE:
        print(
            f"Ours and the peer are within {CLOSE:.0%} of each other: the local Stripe "
            f"(localstripe, pure Python, one process; 'stripe CPU' is its share of one core) "
            f"is likely the bottleneck of both, and the ratio says little about the services."
        )
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description="Order creation vs a FastAPI peer")
    parser.add_argument("--orders", type=int, default=300, help="orders measured per impl")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up requests per impl")
    args = parser.parse_args()
    if args.orders < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--orders and --concurrency must be >= 1, --warmup >= 0")
    # devservers logs its local Stripe starting and stopping: not this bench's output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    redis_prefix = f"lomash_bench:{os.urandom(4).hex()}:"
    busy = machine_busy(1.0)
    with ExitStack() as files:
        logs = {
            name: files.enter_context(tempfile.TemporaryFile(prefix=f"lomash_{name}_"))
            for name in ("ours", "peer")
        }
        with ExitStack() as stack:
            stack.callback(delete_redis_keys, redis_prefix)
            stripe = LocalStripe.at(stack.enter_context(local_stripe(wait_s=STRIPE_START_S)))
            database = stack.enter_context(bench_database(seed))
            running = stack.enter_context(services(database, stripe.url, redis_prefix, logs))
            results = {FLOOR: measure(partial(StripeFloor, stripe.url), 200, args, stripe)}
            for name in ("ours", "peer"):
                orders = partial(Orders, running[name].url("/v1/orders"))
                pid = running[name].process.pid
                results[name] = measure(orders, 201, args, stripe, database, pid)
            exited = {n: r.process.poll() for n, r in running.items()}
        # The servers have stopped: their output is complete.
        problems = report(results, args, busy)
        problems += [
            f"{n} exited meanwhile, with status {code}"
            for n, code in exited.items()
            if code is not None
        ]
        if stripe.pid is None:
            print("(the local Stripe's process was not found: no 'stripe CPU')")
        if busy > BUSY:
            print(f"(the machine was {busy:.0%} busy before the runs: the numbers are noisy)")
        if problems:
            print("\n!!! PROBLEMS:", file=sys.stderr)
            for problem in problems:
                print(f"!!! {problem}", file=sys.stderr)
            for name, log in logs.items():
                if any(p.startswith(f"{name}") for p in problems):
                    print(f"--- the last lines {name} printed:\n{tail(log)}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
