"""``lomash chaos list`` and ``lomash chaos run NAME``.

    lomash chaos list
    lomash chaos run NAME [--local | --target URL] [--duration S] [--workers N]
                          [--rate BOOKINGS_PER_S] [--report FILE] [--broken HOW]
                          [--postgres-url URL] [--redis-url URL]

``--local`` (the default) starts the stack it needs (chaos/_stack.py) and removes it
afterwards; ``--target URL`` runs against a service already listening on a loopback
address of this machine (the experiments that need a proxy in front of a dependency
say so). One line per step, a one-line verdict, the JSON report written to
``--report`` (default ``.chaos/reports/NAME-<time>.json``). Exit status: 0 passed,
1 failed, 2 could not run, 130 interrupted (the fault rolled back first).
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio

if TYPE_CHECKING:
    from chaos._experiment import Report

__all__ = ["BROKEN", "add_chaos_parser", "chaos_command"]

# How ``--broken`` makes the local service wrong on purpose (chaos/_launcher.py).
BROKEN = ("500-on-outage", "lose-pending")

EXIT = {"passed": 0, "failed": 1, "aborted": 130}


def add_chaos_parser(commands: Any) -> None:
    chaos = commands.add_parser("chaos", help="chaos experiments (the spec's chaos table)")
    actions = chaos.add_subparsers(dest="chaos_action", required=True)
    actions.add_parser("list", help="the experiments and what each proves")
    run = actions.add_parser("run", help="run one experiment and print its verdict")
    # Not ``choices``: building every `lomash` parser (each worker's start) would import
    # the experiments; an unknown name is refused when the command runs.
    run.add_argument("name", help="an experiment (lomash chaos list)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="start a local stack (default)")
    where.add_argument("--target", help="a running service on a loopback address")
    run.add_argument("--showroom", default="smoke-test", help="--target: showroom to book in")
    run.add_argument("--duration", type=float, default=20.0, help="seconds the fault holds")
    run.add_argument("--warmup", type=float, default=5.0, help="seconds of load before it")
    run.add_argument("--recovery", type=float, default=60.0, help="seconds allowed to recover")
    run.add_argument("--workers", type=int, default=2, help="--local: worker processes")
    run.add_argument("--rate", type=float, default=8.0, help="bookings per second")
    run.add_argument(
        "--order-rate",
        type=float,
        help="orders per second (default 1 --local, on a local Stripe; 0 --target)",
    )
    run.add_argument("--report", type=Path, help="where the JSON report goes")
    run.add_argument(
        "--folder", type=Path, default=Path(".chaos"), help="--local: where run folders go"
    )
    run.add_argument("--broken", choices=BROKEN, help="--local: a service wrong on purpose")
    run.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="--local: an admin URL of a PostgreSQL to create the run's database on",
    )
    run.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="--local: a Redis")


def chaos_command(arguments: argparse.Namespace) -> int:
    from chaos._experiment import write_report
    from chaos._experiments import EXPERIMENTS

    if arguments.chaos_action == "list":
        for name, kind in EXPERIMENTS.items():
            where = "--local" if kind.local_only else "--local or --target"
            print(f"{name:<18} {kind.title} ({where})\n{'':<18} {kind.hypothesis}")
        return 0
    # The steps speak for themselves; the service's own log is kept in the run folder.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        report = trio.run(_run, arguments)
    except ValueError as error:
        print(f"chaos: {error}")
        return 2
    except KeyboardInterrupt:  # while the stack started or stopped: nothing injected yet
        print("chaos: interrupted")
        return 130
    path = arguments.report or Path(".chaos/reports") / (
        f"{report.experiment}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    )
    write_report(report, path)
    _say(f"{report.experiment}: {report.verdict.upper()}: {report.summary}  (report: {path})")
    return EXIT[report.verdict]


async def _run(arguments: argparse.Namespace) -> Report:
    from chaos._experiment import RunOptions, run_experiment
    from chaos._experiments import experiment_named
    from chaos._load import LoadOptions
    from chaos._stack import StackOptions, local_stack, target_stack

    experiment = experiment_named(arguments.name)
    if arguments.duration < experiment.min_duration_s:
        raise ValueError(f"{experiment.name}: --duration must be >= {experiment.min_duration_s:g}")
    options = RunOptions(
        duration_s=arguments.duration,
        warmup_s=arguments.warmup,
        recovery_s=arguments.recovery,
        load=LoadOptions(
            bookings_per_s=arguments.rate,
            orders_per_s=arguments.order_rate
            if arguments.order_rate is not None
            else (0.0 if arguments.target else 1.0),
        ),
    )
    if arguments.target:
        if experiment.local_only:
            raise ValueError(f"{experiment.name} needs --local (a proxy or the chaos routes)")
        if arguments.broken:
            raise ValueError("--broken needs --local")
        async with target_stack(arguments.target, arguments.showroom) as stack:
            if stack.workers < experiment.min_workers:
                raise ValueError(f"{experiment.name} needs >= {experiment.min_workers} workers")
            return await run_experiment(experiment, stack, options, say=_say)
    stack_options = StackOptions(
        workers=max(arguments.workers, experiment.min_workers),
        postgres_url=arguments.postgres_url,
        redis_url=arguments.redis_url,
        broken=arguments.broken,
        folder=arguments.folder,
        environment=tuple(experiment.environment.items()),
        postgres_pair=experiment.postgres_pair,
        redis_sentinel=experiment.redis_sentinel,
    )
    async with local_stack(stack_options, say=_say) as stack:
        _say(f"local stack: {stack.url} ({stack.workers} workers), log {stack.log_path}")
        return await run_experiment(experiment, stack, options, say=_say)


def _say(line: str) -> None:
    print(line, flush=True)  # each step as it happens, also into a pipe
