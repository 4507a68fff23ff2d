"""Fail-fast benchmark: ``POST /v1/appointments`` while Postgres answers late.

    python -m bench.slow [--latency 2.0] [--requests 200] [--concurrency 10] [--log FILE]

One throwaway database seeded as for bench/booking.py, the fault injector
(``chaos.Proxy``) in front of Postgres in a thread of its own (its own ``trio.run``),
and the service (``python -m service serve``, one worker, no job workers) with its
database URL pointing at the proxy. Then, with ``--concurrency`` clients (httpx, a
thread each, every request a slot of its own and its own Idempotency-Key):

1. normal: ``--requests`` bookings through the proxy forwarding: p50 / p99, statuses;
2. slow: ``proxy.slow(latency)``: every chunk, both ways, arrives ``--latency`` seconds
   late (a Postgres round trip takes twice that longer). Booking goes on; a warm-up
   lasts until ``--concurrency`` answers in a row came back fast (in less than
   ``--latency``) as 202 or 503, at most ``WARMUP_S``; then ``--requests`` answers
   are measured: p50 / p99, statuses, ``Retry-After`` on every 503, and the bytes
   the proxy carried to and from Postgres meanwhile;
3. recovered: ``proxy.forward()``; one client books (``RECOVERY_PAUSE_S`` apart)
   until an answer is 201, at most ``RECOVERY_S``: the seconds that took.

A phase counts every request it sent: the ones still in flight when it had enough
answers (up to ``--concurrency`` - 1 more) too; p50 / p99 are of the requests answered
("none": no answer, e.g. the service had gone). Prints a table and the ratio fail-fast
p50 / normal p50. A 5xx other than 503, a 503 without ``Retry-After``, a request
without an answer (but in the warm-up, which waits slow answers out), a normal phase
that did not book every time, a phase stopped at its bound, or the service exiting is
reported on stderr (with the tail of the service's output; ``--log`` keeps all of
it) and the exit status is 1. Everything runs on 127.0.0.1, bounded in time and in
count; the database, the Redis keys and the processes are removed at the end. The
requests and the phases' answers: bench/slow_load.py.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import trio

from bench.booking import services
from bench.booking_data import Slots, delete_redis_keys, seed
from bench.http import bench_database
from bench.slow_load import Bookings, Phase, drive, fails_fast
from chaos import Proxy, open_proxy

NORMAL_S = 60.0  # bound of the normal phase and of the measured slow phase
WARMUP_S = 60.0  # bound of the slow phase's warm-up: until it fails fast
RECOVERY_S = 40.0  # bound of the recovered phase: until a 201
RECOVERY_PAUSE_S = 0.05
WARMUP_CAP = 20_000  # requests: the warm-up is bounded in count too


# --- the proxy, in a thread of its own ------------------------------------------------


class ProxyThread:
    """A ``chaos.Proxy`` served by a ``trio.run`` in a background thread."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._ready: queue.Queue[tuple[Proxy, trio.lowlevel.TrioToken, trio.Event]] = queue.Queue()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as error:  # handed to the main thread on stop()
            self._failure = error

    async def _serve(self) -> None:
        async with open_proxy(self._upstream_port) as proxy:
            stop = trio.Event()
            self._ready.put((proxy, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    def start(self) -> None:
        self._thread.start()
        while True:
            try:
                self._proxy, self._token, self._stop = self._ready.get(timeout=0.1)
                return
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the proxy did not start") from self._failure

    @property
    def port(self) -> int:
        return self._proxy.port

    def call[T](self, action: Callable[[Proxy], T]) -> T:
        """``action(proxy)``, run in the proxy's trio thread."""
        return trio.from_thread.run_sync(action, self._proxy, trio_token=self._token)

    def slow(self, delay_s: float) -> None:
        self.call(lambda proxy: proxy.slow(delay_s))

    def forward(self) -> None:
        self.call(Proxy.forward)

    def bytes(self) -> tuple[int, int]:
        """(up, down) so far."""
        return self.call(lambda proxy: (proxy.bytes_up, proxy.bytes_down))

    def stop(self) -> None:
        if self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(timeout=10)
        if self._failure is not None:
            raise RuntimeError("the proxy failed") from self._failure


@contextmanager
def proxy_thread(upstream_port: int) -> Iterator[ProxyThread]:
    proxy = ProxyThread(upstream_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def via(url: str, port: int) -> str:
    """``url`` (a Postgres on 127.0.0.1) with ``port`` in place of its own."""
    parts = urlsplit(url)
    user, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{port}"))


# --- the run --------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    normal: Phase
    warmup: Phase | None = None  # None: not run (the service had exited)
    slow: Phase | None = None  # None: it never failed fast, or not run
    recovered: Phase | None = None
    recovery_s: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0


def run(bookings: Bookings, proxy: ProxyThread, args: argparse.Namespace) -> Report:
    n, clients = args.requests, args.concurrency
    report = Report(drive(bookings, clients=clients, count=n, bound_s=NORMAL_S))
    if report.normal.exited is not None:
        return report
    proxy.slow(args.latency)
    window = fails_fast(args.latency, clients)
    warmup = drive(bookings, clients=clients, count=WARMUP_CAP, bound_s=WARMUP_S, done=window)
    report.warmup = warmup
    if warmup.exited is not None:
        return report
    if not warmup.bounded:
        up, down = proxy.bytes()
        report.slow = drive(bookings, clients=clients, count=n, bound_s=NORMAL_S)
        up_after, down_after = proxy.bytes()
        report.bytes_up, report.bytes_down = up_after - up, down_after - down
        if report.slow.exited is not None:
            return report
    proxy.forward()
    forwarded = time.monotonic()
    report.recovered = drive(
        bookings,
        clients=1,
        count=math.ceil(RECOVERY_S / RECOVERY_PAUSE_S),
        bound_s=RECOVERY_S,
        done=lambda answers: answers[-1].status == 201,
        pause_s=RECOVERY_PAUSE_S,
    )
    if report.recovered.answers and report.recovered.answers[-1].status == 201:
        report.recovery_s = report.recovered.answers[-1].at - forwarded
    return report


def show(report: Report, args: argparse.Namespace) -> list[str]:
    """Print the table; return the problems found, one line each."""
    print(
        f"Fail-fast benchmark, POST /v1/appointments: Postgres behind a proxy adding "
        f"{args.latency:g} s each way in the slow phases; {args.requests} answers measured "
        f"per phase, {args.concurrency} clients (httpx, a thread each) on loopback"
    )
    print(
        f"{'phase':<10} {'requests':>8} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'201':>6} {'202':>6} {'503':>6} {'other':>6} {'none':>6}"
    )
    phases: dict[str, Phase | None] = {"normal": report.normal, "warm-up": report.warmup}
    phases |= {"fail-fast": report.slow, "recovered": report.recovered}
    problems: list[str] = []
    for name, phase in phases.items():
        if phase is None:
            print(f"{name:<10} {'-':>8}")
            continue
        s = phase.statuses
        other = sum(n for status, n in s.items() if status not in (0, 201, 202, 503))
        print(
            f"{name:<10} {len(phase.answers):>8} {_ms(phase.quantile_ms(0.5)):>9} "
            f"{_ms(phase.quantile_ms(0.99)):>9} {s[201]:>6} {s[202]:>6} {s[503]:>6} "
            f"{other:>6} {s[0]:>6}"
        )
        problems += check(name, phase)
    if report.warmup is not None and report.warmup.exited is None and report.slow is None:
        problems.append(f"slow: never failed fast within {WARMUP_S:g} s (see warm-up)")
    if report.slow is not None:
        fast, normal = report.slow.quantile_ms(0.5), report.normal.quantile_ms(0.5)
        if fast is not None and normal is not None:
            print(f"fail-fast p50 / normal p50: {fast / max(normal, 1e-9):.2f}x")
        print(
            f"bytes through the proxy while failing fast: {report.bytes_up} up (to "
            f"Postgres), {report.bytes_down} down"
        )
    if report.recovered is not None and report.recovery_s is None:
        problems.append(f"recovered: no 201 within {RECOVERY_S:g} s of forward()")
    if report.recovery_s is not None:
        print(f"first 201 after forward(): {report.recovery_s:.2f} s")
    return problems


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def check(name: str, phase: Phase) -> list[str]:
    statuses = phase.statuses
    found: list[str] = []
    fives = {s: n for s, n in sorted(statuses.items()) if s >= 500 and s != 503}
    if fives:
        sample = next(a.error for a in phase.answers if a.status in fives) or "(no body)"
        found.append(f"{name}: answers 5xx other than 503 {fives}, e.g. {sample}")
    bare = sum(1 for a in phase.answers if a.status == 503 and not a.retry_after)
    if bare:
        found.append(f"{name}: {bare} answers 503 without Retry-After")
    if statuses[0] and name != "warm-up":  # the warm-up waits out slow answers
        errors = Counter(a.error for a in phase.answers if a.status == 0)
        found.append(f"{name}: {statuses[0]} requests got no answer {dict(errors)}")
    if name == "normal" and statuses[201] != len(phase.answers):
        found.append(f"normal: only {statuses[201]} of {len(phase.answers)} answers were 201")
    if phase.bounded and name not in ("warm-up", "recovered"):  # those two: reported apart
        found.append(f"{name}: stopped at its bound")
    if phase.exited is not None:
        found.append(f"{name}: the service exited meanwhile, with status {phase.exited}")
    return found


def tail(log: IO[bytes], lines: int = 30) -> str:
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])


def main() -> None:
    parser = argparse.ArgumentParser(description="Booking latency with Postgres made slow")
    parser.add_argument("--latency", type=float, default=2.0, help="seconds added each way")
    parser.add_argument("--requests", type=int, default=200, help="answers measured per phase")
    parser.add_argument("--concurrency", type=int, default=10, help="concurrent clients")
    parser.add_argument("--log", help="keep the service's output in this file")
    args = parser.parse_args()
    if args.latency <= 0 or args.requests < 1 or args.concurrency < 1:
        parser.error("--latency must be > 0, --requests and --concurrency >= 1")
    redis_prefix = f"lomash_bench:{os.urandom(4).hex()}:"
    slots = Slots(datetime.now(UTC))
    with (
        open(args.log, "w+b") if args.log else tempfile.TemporaryFile(prefix="lomash_slow_")
    ) as log:
        with ExitStack() as stack:
            stack.callback(delete_redis_keys, redis_prefix)
            database = stack.enter_context(bench_database(seed))
            parts = urlsplit(database)
            if parts.hostname not in ("127.0.0.1", "localhost"):
                raise SystemExit("the proxy forwards to 127.0.0.1: use a Postgres there")
            proxy = stack.enter_context(proxy_thread(parts.port or 5432))
            running = stack.enter_context(
                services(via(database, proxy.port), 1, redis_prefix, {"ours": log})
            )["ours"]
            # Runs first on the way out: the service drains quicker on a fast database.
            stack.callback(proxy.forward)
            bookings = Bookings(running.url("/v1/appointments"), slots, running.process)
            report = run(bookings, proxy, args)
        # The service has stopped: its output is complete.
        problems = show(report, args)
        if problems:
            print("\n!!! PROBLEMS:", file=sys.stderr)
            for problem in problems:
                print(f"!!! {problem}", file=sys.stderr)
            print(f"--- the last lines the service printed:\n{tail(log)}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
