"""How much of the floor is hypercorn's trio worker? Three drivers, one app, one run.

    python -m bench.driver [--seconds 8] [--connections 50] [--rounds 2]

Serves the floor app (bench/peers/floor.py: a fixed JSON body) three ways, 1 worker
each, and drives each with wrk for the same time and connections, interleaved over
``--rounds`` rounds (best round kept, so a noisy neighbour skews all alike):

- ``hypercorn``: hypercorn's trio worker, the floor ``bench.http`` measures;
- ``h11``: a lean driver (bench/peers/lean.py): one task per connection and nothing
  per request, h11 for the HTTP, the same ASGI call;
- ``raw``: no HTTP parsing, a canned answer per request: the trio I/O ceiling.

Prints requests/s and the ratios to hypercorn: the h11 ratio bounds what a leaner
driver around hypercorn's protocol classes could gain (it keeps none of hypercorn's
protections, so a real one gains less), the raw ratio what any driver on trio could.
The issue's bar for adopting a leaner driver is 1.5x. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from bench.http import FLOOR, Result, server, wrk

DRIVERS = {
    "hypercorn": FLOOR,
    "h11": [sys.executable, "-m", "bench.peers.lean", "h11"],
    "raw": [sys.executable, "-m", "bench.peers.lean", "raw"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description="hypercorn's trio worker vs leaner drivers")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    best: dict[str, Result] = {}
    for _ in range(args.rounds):
        for name, command in DRIVERS.items():
            with server(command, {}) as running:
                wrk(running.url("/"), 2, args.connections)  # warm-up
                result = wrk(running.url("/"), args.seconds, args.connections)
            if result.errors:
                sys.exit(f"invalid run: {name} answered {result.errors} non-2xx")
            if name not in best or result.requests_per_s > best[name].requests_per_s:
                best[name] = result
    base = best["hypercorn"].requests_per_s
    print(
        f"HTTP drivers on trio: the floor app, {args.seconds}s per run, {args.connections} "
        f"connections, 1 worker, best of {args.rounds} interleaved rounds"
    )
    print(f"{'driver':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs hypercorn':>13}")
    for name, r in best.items():
        print(
            f"{name:<10} {r.requests_per_s:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{r.requests_per_s / base:>12.2f}x"
        )
    lean = best["h11"].requests_per_s / base
    verdict = "clears" if lean >= 1.5 else "does not clear"
    print(f"a lean h11 driver, with none of hypercorn's protections, {verdict} 1.5x: {lean:.2f}x")


if __name__ == "__main__":
    main()
