"""Actor runtime benchmark: ask vs direct await, restart latency, breaker fast-fail.

    python -m bench.runtime [--n 20000]

Prints, from one run on this machine (real clock, no network):

1. ask round trip vs a direct ``await handler.handle(msg)`` of the same behaviour,
   and vs a bare request/reply between two trio tasks (memory channel + Event, the
   floor for any actor), with ratios: what the mailbox, reply slot and policies
   cost per message. Also the same with a caller deadline around each call (the
   gateway's case: the ask then relies on it instead of opening its own scope).
   Best of three interleaved rounds, so a noisy neighbour skews all paths alike;
2. crash-to-serving restart latency: from the moment a handler raises to the moment
   the restarted actor has answered the next ask (the immediate-restart path: a
   crash after a stable period; consecutive crashes back off on purpose);
3. breaker-open rejection latency: how fast an ask fails with ServiceUnavailable
   once the circuit is open (no queueing, no timeout).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
import trio

from config import BreakerSettings, RestartSettings, RetrySettings
from supervisors import (
    ActorCrashed,
    ActorSpec,
    ConnectionLost,
    Idempotent,
    ServiceUnavailable,
    SupervisorSpec,
    open_supervisor,
)


@dataclass(frozen=True, slots=True)
class Ping:
    crash: bool = False
    fail: bool = False


@dataclass(frozen=True, slots=True)
class Read(Ping, Idempotent):
    """A message the retry policy may retry (it never needs to here)."""


class Pong:
    """Answers at once (after one checkpoint, as any real async handler would)."""

    def __init__(self, crashed_at: list[float]) -> None:
        self.crashed_at = crashed_at

    async def handle(self, message: Ping) -> str:
        await trio.lowlevel.checkpoint()
        if message.crash:
            self.crashed_at.append(time.perf_counter())
            raise RuntimeError("crash on purpose")
        if message.fail:
            raise ConnectionLost("down on purpose", dependency="bench")
        return "pong"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(label: str, samples_s: list[float]) -> str:
    us = [s * 1e6 for s in samples_s]
    return (
        f"  {label:<32} p50 {percentile(us, 0.5):8.1f} us   p99 {percentile(us, 0.99):8.1f} us"
        f"   mean {statistics.fmean(us):8.1f} us   (n={len(us)})"
    )


async def per_message(n: int, call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n


async def bench_ask(n: int, rounds: int = 3) -> dict[str, float]:
    """Best-of-``rounds`` seconds per message for each way of reaching the behaviour."""
    crashed_at: list[float] = []
    spec = ActorSpec("pong", lambda: Pong(crashed_at))
    # Every policy on: breaker, retry (the message is idempotent), message timeout.
    guarded = ActorSpec(
        "guarded", lambda: Pong(crashed_at), breaker=BreakerSettings(), retry=RetrySettings()
    )
    direct = Pong(crashed_at)
    message = Ping()
    read = Read()
    send, receive = trio.open_memory_channel[tuple[trio.Event, list[str]]](1)

    async def raw_server() -> None:
        async for done, box in receive:
            box.append(await direct.handle(message))
            done.set()

    async def raw_round_trip() -> str:
        done, box = trio.Event(), list[str]()
        send.send_nowait((done, box))
        await done.wait()
        return box[0]

    async def ask_with_caller_deadline() -> str:
        with trio.move_on_after(1.0):
            return await spec.ref.ask(message)
        raise AssertionError("timed out")

    async def direct_with_caller_deadline() -> str:
        with trio.move_on_after(1.0):
            return await direct.handle(message)
        raise AssertionError("timed out")

    paths: dict[str, Callable[[], Awaitable[object]]] = {
        "direct": lambda: direct.handle(message),
        "raw": raw_round_trip,
        "ask": lambda: spec.ref.ask(message),
        "guarded": lambda: guarded.ref.ask(read),
        "deadline_direct": direct_with_caller_deadline,
        "deadline_ask": ask_with_caller_deadline,
    }
    best = dict.fromkeys(paths, float("inf"))
    tree = SupervisorSpec("root", [spec, guarded])
    async with open_supervisor(tree), trio.open_nursery() as nursery:
        nursery.start_soon(raw_server)
        for call in paths.values():  # warm up every path
            await per_message(1000, call)
        for _ in range(rounds):
            for name, call in paths.items():
                best[name] = min(best[name], await per_message(n, call))
        nursery.cancel_scope.cancel()
    return best


async def bench_restart(rounds: int) -> list[float]:
    crashed_at: list[float] = []
    spec = ActorSpec("pong", lambda: Pong(crashed_at))
    # Every crash counts as "after a stable period" (reset 0 s): the immediate path.
    restarts = RestartSettings(max_restarts=rounds + 1, within_s=1.0, backoff_reset_s=0.0)
    latencies: list[float] = []
    async with open_supervisor(SupervisorSpec("root", [spec], restarts=restarts)):
        for _ in range(rounds):
            with contextlib.suppress(ActorCrashed):
                await spec.ref.ask(Ping(crash=True))
            await spec.ref.ask(Ping())
            latencies.append(time.perf_counter() - crashed_at[-1])
    return latencies


async def bench_breaker(n: int) -> list[float]:
    spec = ActorSpec("pong", lambda: Pong([]), breaker=BreakerSettings())
    latencies: list[float] = []
    async with open_supervisor(SupervisorSpec("root", [spec])):
        for _ in range(5):
            with contextlib.suppress(ConnectionLost):
                await spec.ref.ask(Ping(fail=True))
        for _ in range(n):
            start = time.perf_counter()
            try:
                await spec.ref.ask(Ping())
            except ServiceUnavailable:
                latencies.append(time.perf_counter() - start)
            else:  # pragma: no cover - the circuit must be open
                raise AssertionError("breaker did not reject")
    return latencies


async def main(n: int) -> None:
    ask = await bench_ask(n)
    restart = await bench_restart(max(200, n // 20))
    rejected = await bench_breaker(n)
    us = {name: seconds * 1e6 for name, seconds in ask.items()}
    restart_p50_ms = percentile(restart, 0.5) * 1e3
    breaker_p99_ms = percentile(rejected, 0.99) * 1e3
    print(f"actor runtime (trio {trio.__version__}), {n} messages per measurement")
    print(f"  direct await of the handler        {us['direct']:8.2f} us per message")
    print(f"  bare two-task channel round trip   {us['raw']:8.2f} us per message (the floor)")
    print(f"  ask via the mailbox                {us['ask']:8.2f} us per message")
    print(f"  ask, breaker + retry + timeout     {us['guarded']:8.2f} us per message")
    print(f"  ratio ask / direct                 {us['ask'] / us['direct']:8.2f} x")
    print(f"  ratio ask / bare round trip        {us['ask'] / us['raw']:8.2f} x")
    guarded_ratio = us["guarded"] / us["raw"]
    print(f"  ratio guarded ask / bare round trip {guarded_ratio:7.2f} x")
    print(
        f"  under a caller deadline: direct {us['deadline_direct']:.2f} us, "
        f"ask {us['deadline_ask']:.2f} us, ratio {us['deadline_ask'] / us['deadline_direct']:.1f} x"
    )
    print(row("crash-to-serving restart", restart))
    print(row("breaker-open rejection", rejected))
    verdict = "met" if guarded_ratio <= 1.5 else "MISSED"
    print(
        f"  target ask with policies <= 1.5x the bare round trip: {guarded_ratio:.2f}x ({verdict})"
    )
    verdict = "met" if restart_p50_ms <= 10.0 else "MISSED"
    print(f"  target restart p50 <= 10 ms:       {restart_p50_ms:.3f} ms ({verdict})")
    verdict = "met" if breaker_p99_ms <= 2.0 else "MISSED"
    print(f"  target rejection p99 <= 2 ms:      {breaker_p99_ms:.4f} ms ({verdict})")


def cli() -> None:
    # The restart benchmark crashes on purpose a thousand times: keep the log quiet.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    parser = argparse.ArgumentParser(description="actor runtime benchmark")
    parser.add_argument("--n", type=int, default=20_000, help="messages per measurement")
    args = parser.parse_args()
    trio.run(main, args.n)


if __name__ == "__main__":
    cli()
