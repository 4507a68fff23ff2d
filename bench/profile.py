"""Where a hot route's time goes: py-spy samples `lomash serve` while wrk drives it.

    python -m bench.profile [--route /health/live] [--seconds 8] [--connections 50]
                            [--floor] [--raw FILE]

Starts the service (one worker) on a throwaway database as bench.http does, drives
``--route`` with wrk, and records the serving process with ``py-spy record --format
raw`` meanwhile (``--floor``: the bare ASGI app on hypercorn's trio worker instead).
Prints, for each part of the stack, its self share (samples whose innermost frame of
a known part is in it) and its inclusive share (samples whose stack passes through
it: these overlap, the edge layers nest), and the functions most often on top of the
stack. ``--raw`` keeps the
collapsed stacks (for a flame graph). Needs py-spy (the ``bench`` extra) and wrk.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.http import FLOOR, REDIS_URL, bench_database, server, wrk

# The stack's parts, by the file a frame is in (first match wins for "self" time).
PARTS = [
    ("asyncio bridge (trio-asyncio)", re.compile(r"trio_asyncio/|asyncio/")),
    ("quart / werkzeug", re.compile(r"quart/|quart_trio/|werkzeug/|flask/")),
    ("h11", re.compile(r"h11/")),
    ("hypercorn", re.compile(r"hypercorn/")),
    ("trio runtime", re.compile(r"trio/")),
    ("logging (structlog)", re.compile(r"structlog/|service/_logging")),
    ("metrics (prometheus)", re.compile(r"prometheus_client/|gateway/_metrics")),
    ("our HTTP server", re.compile(r"gateway/_(http_server|lean_http|connections)")),
    ("our edge (budget, edge guard, cors)", re.compile(r"gateway/_(budget|edge|cors)")),
    ("our routes (fast, app)", re.compile(r"gateway/_(fast|app|appointments|products)")),
    ("actors and runtime", re.compile(r"actors/|supervisors/")),
    ("adapters (asyncpg, redis)", re.compile(r"adapters/|asyncpg/|redis/")),
    ("json (msgspec)", re.compile(r"msgspec")),
]
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def summarise(raw: str) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    """(samples per part, inclusive; per part, self: the innermost frame of a known
    part; per top function; samples)."""
    parts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    tops: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        seen = {name for name, pattern in PARTS if any(pattern.search(f) for f in frames)}
        for name in seen:
            parts[name] += count
        own[_innermost(frames)] += count
        if frames:
            found = _FRAME.match(frames[-1].strip())
            top = frames[-1] if found is None else f"{found['function']} ({found['file']})"
            tops[top] += count
    return parts, own, tops, total


def _innermost(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in PARTS:
            if pattern.search(frame):
                return name
    return "other (python, stdlib)"


@contextmanager
def recording(pid: int, seconds: int) -> Iterator[Callable[[], str]]:
    """py-spy records process ``pid`` (and its children) for ``seconds`` from now;
    the callable given waits for it and returns the collapsed stacks."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "raw.txt"
        record = [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw"]
        record += ["--output", str(out), "--rate", "250", "--duration", str(seconds)]
        spy = subprocess.Popen(
            [*record, "--subprocesses", "--pid", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stacks() -> str:
            spy.wait(timeout=seconds + 30)
            return out.read_text()

        try:
            yield stacks
        finally:
            if spy.poll() is None:
                spy.kill()


def print_summary(title: str, raw: str) -> None:
    parts, own, tops, total = summarise(raw)
    print(f"{title}, {total} samples")
    print("  self (the innermost frame of each part)   inclusive (passes through it)")
    for name, count in own.most_common():
        print(f"  {100 * count / total:5.1f} %  {name:<38} {100 * parts[name] / total:5.1f} %")
    print("  top of stack (self):")
    for function, count in tops.most_common(12):
        print(f"  {100 * count / total:5.1f} %  {function}")


def main() -> None:
    parser = argparse.ArgumentParser(description="profile a hot route under load")
    parser.add_argument("--route", default="/health/live")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--floor", action="store_true", help="profile the bare ASGI app")
    parser.add_argument("--raw", type=Path, help="keep the collapsed stacks here")
    args = parser.parse_args()
    with bench_database() as url:
        env = {
            "LOMASH_DATABASE_URL": url,
            "LOMASH_REDIS_URL": REDIS_URL,
            "LOMASH_REDIS_PREFIX": f"lomash_bench:{secrets.token_hex(4)}:",
            "LOMASH_LOG_LEVEL": "info",
        }
        ours = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "0"]
        with server(FLOOR if args.floor else ours, env) as running:
            route = "/" if args.floor else args.route
            wrk(running.url(route), 2, args.connections)  # warm-up
            with recording(running.process.pid, args.seconds) as stacks:
                result = wrk(running.url(route), args.seconds, args.connections)
                raw = stacks()
    if args.raw:
        args.raw.write_text(raw)
    what = "the floor (bare ASGI, hypercorn trio)" if args.floor else f"GET {args.route}"
    print_summary(f"{what}: {result.requests_per_s:.0f} req/s under wrk", raw)


if __name__ == "__main__":
    main()
