"""The spec's chaos table, each a fault with what it must not break.

Every one runs under the same steady load and invariants (chaos/_load.py) and in the
same shape (chaos/_experiment.py); what each adds is its fault, its rollback and its
own expectations, from what the load and /health saw.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
from typing import Any, ClassVar

import httpx
import trio

from chaos._experiment import Context, Experiment, p50_ms
from chaos._load import quantile_ms

__all__ = [
    "BOOKINGS",
    "CpuHog",
    "LatencyInjector",
    "MemoryLeak",
    "NetworkPartition",
    "PodKiller",
    "first",
]

BOOKINGS = ("book", "rival")
FAST_MS = 500.0  # an answer the breaker gave, not Postgres (4 s a round trip)


def first(samples: list[float]) -> float | None:
    return samples[0] if samples else None


class PodKiller(Experiment):
    name = "pod-killer"
    title = "SIGKILL a worker process under load"
    hypothesis = (
        "the parent replaces a killed worker within 30 s while the others serve; clients"
        " retrying with their Idempotency-Key lose and double nothing"
    )
    local_only = False
    min_workers = 2
    kills: ClassVar[int] = 2
    in_flight: ClassVar[int] = 24  # bookings sent just before each kill
    extra_slots = kills * in_flight

    def __init__(self) -> None:
        self.killed: list[dict[str, Any]] = []

    async def inject(self, context: Context) -> None:
        pass  # the kills happen while the fault "holds": one every duration / kills

    async def hold(self, context: Context) -> None:
        every_s = context.options.duration_s / self.kills
        for _ in range(self.kills):
            before = context.stack.worker_pids()
            if not before:
                context.expect("workers", False, "no worker process to kill")
                return
            victim = before[len(self.killed) % len(before)]
            # Bookings in flight when the worker dies: their clients get no answer
            # and must retry with the same key (the load does, as a client should).
            await context.load.burst(self.in_flight)
            await trio.sleep(0.005)
            killed_at = trio.current_time()
            os.kill(victim, signal.SIGKILL)
            context.action("sigkill_worker", pid=victim)
            kill: dict[str, Any] = {"pid": victim, "replaced_s": None, "serving_s": None}
            self.killed.append(kill)
            with trio.move_on_after(every_s):
                fresh = await self._replaced(context, before, victim)
                kill["replaced_s"] = round(trio.current_time() - killed_at, 2)
                context.action("worker_replaced", pid=fresh, after_s=kill["replaced_s"])
                await self._answered_by(context, fresh)
                kill["serving_s"] = round(trio.current_time() - killed_at, 2)
                context.action("new_worker_answering", pid=fresh, after_s=kill["serving_s"])
            await trio.sleep_until(killed_at + every_s)

    async def _replaced(self, context: Context, before: list[int], victim: int) -> int:
        """The pid of the worker the parent started in place of ``victim``."""
        while True:
            now = context.stack.worker_pids()
            if fresh := sorted(set(now) - set(before)):
                return fresh[0]
            await trio.sleep(0.02)

    async def _answered_by(self, context: Context, pid: int) -> None:
        """Until worker ``pid`` answers a request: /metrics on a new connection each
        time (so the kernel hands it to any worker) carries the answering worker's
        ``worker="pid"`` label."""
        mark = f'worker="{pid}"'
        while True:
            with contextlib.suppress(httpx.HTTPError):
                answer = await context.client.get(
                    "/metrics", headers={"Connection": "close"}, timeout=2
                )
                if mark in answer.text:
                    return
            await trio.sleep(0.02)

    async def rollback(self, context: Context) -> None:
        pass  # nothing to undo: the parent replaced the workers (or recovery says not)

    def judge(self, context: Context) -> None:
        context.measure("kills", self.killed)
        for kill in self.killed:
            serving = kill["serving_s"]
            context.expect(
                "replaced within 30 s",
                serving is not None and float(serving) <= 30.0,
                f"worker {kill['pid']}: serving again after {serving} s",
            )
        start, _ = context.fault_window()
        unanswered = [a for a in context.load.attempts if a.status is None and a.at_s >= start]
        context.measure("attempts_without_answer", len(unanswered))
        context.measure("bookings_answered_after_retrying", context.load.retried_after_no_answer)
        context.measure(
            "worst_health_gap_s",
            _worst_gap([h.at_s for h in context.load.health if h.status is not None]),
        )


class LatencyInjector(Experiment):
    name = "latency-injector"
    title = "+2 s on every packet to and from Postgres"
    hypothesis = (
        "the Postgres breaker opens and the service answers fast (503 with Retry-After, or"
        " the 202 pending path for bookings) instead of waiting the 2 s; /health says so"
    )
    latency_s: ClassVar[float] = 2.0
    min_duration_s = 12.0  # the gate needs up to the call timeout (5 s) to open

    async def inject(self, context: Context) -> None:
        assert context.stack.postgres_proxy is not None
        context.stack.postgres_proxy.slow(self.latency_s)
        context.action("postgres_latency", added_s=self.latency_s)

    async def rollback(self, context: Context) -> None:
        assert context.stack.postgres_proxy is not None
        context.stack.postgres_proxy.forward()

    def judge(self, context: Context) -> None:
        start, end = context.fault_window()
        told = [h.at_s for h in context.health_during() if h.checks.get("database", "ok") != "ok"]
        context.expect(
            "/health tells",
            bool(told),
            "/health named the database"
            + (f" after {told[0] - start:.2f} s" if told else " never"),
        )
        # Calls already waiting on Postgres take up to the call timeout (5 s) before the
        # gate has seen enough slow calls to open; from the first fast refusal on, every
        # outage answer must be fast.
        outage = [
            a for a in context.answers((*BOOKINGS, "read"), start, end) if a.status in (202, 503)
        ]
        fast = [a for a in outage if a.ms < FAST_MS]
        if not fast:
            context.expect("breaker opens", False, f"no fast outage answer in {len(outage)}")
            return
        opened = fast[0].at_s
        context.measure("breaker_open_after_s", round(opened - start, 2))
        after = [a for a in outage if a.at_s >= opened]
        p50 = quantile_ms([a.ms for a in after], 0.5)
        context.measure("fast_fails", len(after))
        context.measure("fast_fail_p50_ms", p50)
        context.measure(
            "fast_fail_statuses", {str(s): sum(a.status == s for a in after) for s in (202, 503)}
        )
        context.expect(
            "fails fast",
            p50 is not None and p50 < FAST_MS,
            f"{len(after)} outage answers (202 pending, 503) once the breaker opened,"
            f" p50 {p50} ms (the injected latency is {self.latency_s * 1000:g} ms)",
        )


class NetworkPartition(Experiment):
    name = "network-partition"
    title = "Redis blackholed: connections hang, nothing answers"
    hypothesis = (
        "the service serves degraded (no cache, no locks: Postgres carries the load and its"
        " constraint keeps slots single); /health says degraded, then healthy after"
    )

    async def inject(self, context: Context) -> None:
        proxy = context.stack.redis_proxy
        assert proxy is not None
        proxy.blackhole()  # new connections: accepted, never answered
        proxy.freeze()  # open ones: carry nothing
        context.action("redis_blackholed")

    async def rollback(self, context: Context) -> None:
        assert context.stack.redis_proxy is not None
        context.stack.redis_proxy.forward()

    def judge(self, context: Context) -> None:
        start, end = context.fault_window()
        during = context.health_during()
        degraded = [h.at_s for h in during if h.status == "degraded"]
        context.expect(
            "/health says degraded",
            bool(degraded),
            f"{len(degraded)} of {len(during)} health answers said degraded",
        )
        if degraded:
            context.measure("detected_after_s", round(degraded[0] - start, 2))
        unhealthy = [h for h in during if h.status == "unhealthy"]
        context.expect(
            "Postgres carries the load",
            not unhealthy,
            f"{len(unhealthy)} health answers said unhealthy (the database is not the fault)",
        )
        confirmed = [a for a in context.answers(BOOKINGS, start + 2, end) if a.status == 201]
        context.measure("confirmed_during", len(confirmed))
        context.expect(
            "bookings confirmed during the partition",
            bool(confirmed),
            f"{len(confirmed)} bookings answered 201 while Redis was blackholed",
        )


class CpuHog(Experiment):
    name = "cpu-hog"
    title = "busy-loop neighbours on every core"
    hypothesis = (
        "latency grows but nothing fails: no error, every booking kept, /health answers"
        " and tells the truth throughout"
    )
    local_only = False

    def __init__(self) -> None:
        self.hogs: list[trio.Process] = []

    async def inject(self, context: Context) -> None:
        from devservers._embedded import dies_with_parent

        for _ in range(os.cpu_count() or 2):
            self.hogs.append(
                await trio.lowlevel.open_process(
                    [sys.executable, "-c", "while True: pass"],
                    start_new_session=True,  # Ctrl-C reaches the experiment, which kills them
                    preexec_fn=dies_with_parent(),  # and so does the experiment's own death
                )
            )
        context.action("cpu_hogs_started", pids=[h.pid for h in self.hogs])

    async def rollback(self, context: Context) -> None:
        for hog in self.hogs:
            hog.kill()
        for hog in self.hogs:
            await hog.wait()

    def judge(self, context: Context) -> None:
        start, end = context.fault_window()
        before = p50_ms(context, BOOKINGS, 0, start)
        during = p50_ms(context, BOOKINGS, start, end)
        context.measure("booking_p50_ms_before", before)
        context.measure("booking_p50_ms_during", during)
        context.measure(
            "booking_p95_ms_during",
            quantile_ms([a.ms for a in context.answers(BOOKINGS, start, end)], 0.95),
        )
        samples = context.health_during()
        silent = [h for h in samples if h.status is None]
        context.expect(
            "/health answers",
            len(silent) <= len(samples) // 10,
            f"{len(silent)} of {len(samples)} health probes got no answer within 2 s",
        )
        told = {h.status for h in samples} - {None}
        context.expect(
            "/health truthful",
            told <= {"healthy", "degraded"},
            f"health said {sorted(s or '' for s in told)} (the dependencies are up)",
        )


class MemoryLeak(Experiment):
    name = "memory-leak"
    title = "a worker grows past LOMASH_WORKER_MEMORY_LIMIT_MB"
    hypothesis = (
        "the parent drains and replaces the worker past its limit while the others serve;"
        " no accepted booking is lost"
    )
    min_workers = 2
    limit_mb: ClassVar[int] = 400
    environment: ClassVar[dict[str, str]] = {
        "LOMASH_WORKER_MEMORY_LIMIT_MB": str(limit_mb),
        "LOMASH_WORKER_MEMORY_CHECK_S": "0.5",
    }

    async def inject(self, context: Context) -> None:
        context.action("leak_started", limit_mb=self.limit_mb)

    async def hold(self, context: Context) -> None:
        """Leak 32 MiB every 0.2 s in whichever worker answers, until one is replaced."""
        stack = context.stack
        with trio.move_on_after(context.options.duration_s):
            async with trio.open_nursery() as leaking:
                leaking.start_soon(self._leak, context)
                exceeded = await stack.first_logged("worker_memory_exceeded")
                leaking.cancel_scope.cancel()
            context.action(
                "worker_memory_exceeded", pid=exceeded["pid"], mb=exceeded["resident_mb"]
            )
            exited = await stack.first_logged("worker_exited", pid=exceeded["pid"])
            context.action("worker_drained", pid=exited["pid"], status=exited["status"])
            context.measure("drain_s", round(exited["_at"] - exceeded["_at"], 2))
            serving = await stack.first_logged("http_listening", after=exited["_at"])
            context.measure("replaced_serving_s", round(serving["_at"] - exceeded["_at"], 2))
            context.action("worker_replaced")

    async def _leak(self, context: Context) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                await context.client.post("/_chaos/grow", params={"mb": 32}, timeout=5)
            await trio.sleep(0.2)

    async def rollback(self, context: Context) -> None:
        pass  # the leak lives in the replaced worker: gone with it

    def judge(self, context: Context) -> None:
        exceeded = context.stack.logged("worker_memory_exceeded")
        context.expect("limit watched", bool(exceeded), f"{len(exceeded)} workers went past it")
        replaced = context.report.measurements.get("replaced_serving_s")
        context.expect(
            "replaced within 30 s",
            replaced is not None and replaced <= 30,
            f"a new worker serving {replaced} s after the limit was seen",
        )
        drained = [e for e in context.stack.logged("worker_exited") if e["status"] == 0]
        context.expect(
            "drained (exit 0 after SIGTERM), not killed",
            bool(drained),
            f"exit statuses {[e['status'] for e in context.stack.logged('worker_exited')]}",
        )


def _worst_gap(times: list[float]) -> float:
    return round(max((b - a for a, b in itertools.pairwise(times)), default=0.0), 2)
