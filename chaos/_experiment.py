"""One chaos experiment run, in the chaostoolkit shape.

``run_experiment`` does, in order, each step bounded in time:

1. steady state before: ``/health`` healthy (waiting up to ``STEADY_S`` for a fresh
   stack to connect), the read routes answer; else the run stops there ("not steady":
   nothing was injected);
2. the load (chaos/_load.py) starts, and warms up for ``warmup_s``: the baseline;
3. the method: the experiment injects its fault and holds it for ``duration_s``,
   checking what it expects meanwhile;
4. the rollbacks: the experiment undoes its fault, always (a failed step, a bug,
   Ctrl-C: a shielded ``finally``);
5. recovery: ``/health`` healthy again and a booking confirmed after the rollback,
   within ``recovery_s`` (the time it took is reported);
6. the load stops after ``cooldown_s`` more; every accepted booking is read back until
   it settles, and the invariants are checked (no accepted write lost, no double
   booking, no 5xx but 503 with Retry-After, no unexpected answer);
7. steady state after, as in 1.

The verdict is ``passed`` when every step held, ``failed`` naming each deviation, or
``aborted`` (Ctrl-C: rolled back, report written, nothing judged). The report (JSON)
has every probe, action, measurement and deviation.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import trio

from chaos._load import Load, LoadOptions, discover_slots, quantile_ms
from chaos._stack import Stack

__all__ = ["Context", "Experiment", "Report", "RunOptions", "run_experiment"]

STEADY_S = 30.0


@dataclass(frozen=True, slots=True)
class RunOptions:
    duration_s: float = 20.0
    warmup_s: float = 5.0
    cooldown_s: float = 5.0
    recovery_s: float = 60.0
    load: LoadOptions = field(default_factory=LoadOptions)


@dataclass
class Report:
    experiment: str
    title: str
    hypothesis: str
    target: str
    started_at: str
    verdict: str = "failed"
    summary: str = ""
    steady_state_before: dict[str, Any] = field(default_factory=dict)
    steady_state_after: dict[str, Any] = field(default_factory=dict)
    method: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    expectations: list[dict[str, Any]] = field(default_factory=list)
    invariants: dict[str, list[str]] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def as_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, default=str)


@dataclass
class Context:
    """What an experiment's steps act through and write to."""

    stack: Stack
    client: httpx.AsyncClient
    load: Load
    report: Report
    options: RunOptions
    say: Callable[[str], None]
    fault_at_s: float = 0.0
    rollback_at_s: float = 0.0

    def action(self, name: str, **detail: Any) -> None:
        self.report.method.append({"action": name, "at_s": self.load.now_s(), **detail})
        self.say(f"  {self.load.now_s():7.2f} s  {name} {_brief(detail)}")

    def measure(self, name: str, value: Any) -> None:
        self.report.measurements[name] = value

    def expect(self, name: str, held: bool, detail: str) -> None:
        self.report.expectations.append({"expectation": name, "held": held, "detail": detail})
        if not held:
            self.report.deviations.append(f"{name}: {detail}")

    def fault_window(self) -> tuple[float, float]:
        return self.fault_at_s, self.rollback_at_s

    def health_during(self) -> list[Any]:
        start, end = self.fault_window()
        return [h for h in self.load.health if start <= h.at_s < end]

    def answers(self, kinds: tuple[str, ...], since_s: float, until_s: float) -> list[Any]:
        return [
            a
            for a in self.load.attempts
            if a.kind in kinds and since_s <= a.at_s < until_s and a.status is not None
        ]


class Experiment:
    """An experiment: subclasses say what they inject, hold, undo and expect."""

    name: ClassVar[str]
    title: ClassVar[str]
    hypothesis: ClassVar[str]
    local_only: ClassVar[bool] = True  # needs a proxy or the chaos routes
    min_workers: ClassVar[int] = 1
    min_duration_s: ClassVar[float] = 1.0
    extra_slots: ClassVar[int] = 0  # booked beside the steady load (bursts)
    # Real replicas instead of the local servers behind proxies (chaos/_stack.py).
    postgres_pair: ClassVar[bool] = False
    redis_sentinel: ClassVar[bool] = False
    # Extra settings of the local stack's service (LOMASH_* variables).
    environment: ClassVar[dict[str, str]] = {}

    async def inject(self, context: Context) -> None:
        raise NotImplementedError

    async def hold(self, context: Context) -> None:
        """While the fault holds (``duration_s``); by default, nothing but waiting."""
        await trio.sleep(context.options.duration_s)

    async def rollback(self, context: Context) -> None:
        raise NotImplementedError

    def judge(self, context: Context) -> None:
        """The experiment's own expectations, from what the load and probes saw."""


def _brief(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in detail.items())


async def steady_state(client: httpx.AsyncClient, within_s: float) -> dict[str, Any]:
    """Healthy and serving reads, waiting up to ``within_s`` for it."""
    probes: dict[str, Any] = {}
    deadline = trio.current_time() + within_s
    while True:
        try:
            health = await client.get("/health", timeout=3)
            probes["health"] = {"status": health.status_code, **health.json()}
            reads = [await client.get(p, timeout=3) for p in ("/v1/showrooms", "/v1/products")]
            probes["reads"] = [r.status_code for r in reads]
            met = health.json().get("status") == "healthy" and all(
                r.status_code == 200 for r in reads
            )
        except (httpx.HTTPError, ValueError) as error:
            probes["error"] = f"{type(error).__name__}: {error}"
            met = False
        if met or trio.current_time() > deadline:
            probes["met"] = met
            return probes
        await trio.sleep(0.5)


async def run_experiment(
    experiment: Experiment,
    stack: Stack,
    options: RunOptions,
    *,
    say: Callable[[str], None] = print,
) -> Report:
    report = Report(
        experiment.name,
        experiment.title,
        experiment.hypothesis,
        stack.url,
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
    began = time.monotonic()
    # Ctrl-C (or SIGTERM) cancels the run where it is; the rollback, shielded, still
    # runs, and the report says "aborted".
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def interrupted() -> None:
                async for signum in signals:
                    say(f"  {signal.Signals(signum).name}: stopping, rolling back")
                    report.verdict = "aborted"
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(interrupted)
            await _run(experiment, stack, options, report, say)
            nursery.cancel_scope.cancel()
    if report.verdict == "aborted":
        report.summary = "interrupted: the fault was rolled back, nothing judged"
    report.duration_s = round(time.monotonic() - began, 1)
    return report


async def _run(
    experiment: Experiment,
    stack: Stack,
    options: RunOptions,
    report: Report,
    say: Callable[[str], None],
) -> None:
    limits = httpx.Limits(max_connections=options.load.max_in_flight + 16)
    async with httpx.AsyncClient(base_url=stack.url, limits=limits) as client:
        say(f"{experiment.name}: {experiment.hypothesis}")
        report.steady_state_before = await steady_state(client, STEADY_S)
        if not report.steady_state_before["met"]:
            report.deviations.append("steady state before: not met (nothing was injected)")
            report.summary = "not steady before the fault"
            return
        say("  steady state before: met")
        total_s = options.warmup_s + options.duration_s + options.recovery_s + options.cooldown_s
        wanted = int(options.load.bookings_per_s * total_s) + 20 + experiment.extra_slots
        slots = await discover_slots(client, stack.showroom, wanted)
        products = [p["id"] for p in (await client.get("/v1/products")).json()["products"]]
        load = Load(client, slots, options.load, products)
        context = Context(stack, client, load, report, options, say)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load.run)
            await trio.sleep(options.warmup_s)
            context.fault_at_s = load.now_s()
            try:
                await experiment.inject(context)
                await experiment.hold(context)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    context.rollback_at_s = load.now_s()
                    await experiment.rollback(context)
                    report.rollbacks.append({"at_s": context.rollback_at_s, "done": True})
                    say(f"  {context.rollback_at_s:7.2f} s  rolled back")
            recovered_at = await _recovery(context)
            if recovered_at is None:
                report.deviations.append(
                    "recovery: not healthy with a confirmed booking (and a placed order) within"
                    f" {options.recovery_s:g} s of the rollback"
                )
            else:
                context.measure("recovery_s", round(recovered_at - context.rollback_at_s, 2))
                say(f"  {recovered_at:7.2f} s  recovered")
            await trio.sleep(options.cooldown_s)
            nursery.cancel_scope.cancel()
        say("  settling the accepted bookings ...")
        await load.settle()
        report.invariants = load.violations()
        for name, found in report.invariants.items():
            if found:
                report.deviations.append(f"{name}: {len(found)} (e.g. {found[0]})")
        experiment.judge(context)
        report.load = {
            "before": load.summary(0, context.fault_at_s),
            "during": load.summary(context.fault_at_s, context.rollback_at_s),
            "after": load.summary(context.rollback_at_s),
            "outcomes": load.outcomes(),
        }
        report.steady_state_after = await steady_state(client, STEADY_S)
        if not report.steady_state_after["met"]:
            report.deviations.append("steady state after: not met")
    report.verdict = "failed" if report.deviations else "passed"
    report.summary = "; ".join(report.deviations) or "every expectation and invariant held"


async def _recovery(context: Context) -> float | None:
    """When, after the rollback, /health said healthy, a booking was CONFIRMED and
    (if the load places orders) an order was placed."""
    deadline = trio.current_time() + context.options.recovery_s
    load = context.load
    ordering = load.ordering
    while trio.current_time() < deadline:
        since = context.rollback_at_s
        healthy = [h.at_s for h in load.health if h.at_s >= since and h.status == "healthy"]
        booked = [
            b.at_s for b in load.accepted if b.at_s >= since and b.first_status == "CONFIRMED"
        ]
        ordered = [o.at_s for o in load.orders if o.at_s >= since] if ordering else [since]
        if healthy and booked and ordered:
            return max(healthy[0], booked[0], ordered[0])
        await trio.sleep(0.25)
    return None


def p50_ms(context: Context, kinds: tuple[str, ...], since_s: float, until_s: float) -> Any:
    return quantile_ms([a.ms for a in context.answers(kinds, since_s, until_s)], 0.5)


def write_report(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.as_json() + "\n")
    return path
