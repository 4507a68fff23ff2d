"""Growth benchmark: do bookings and availability stay as fast as the data grows?

    python -m bench.growth [--sizes 0,10000,100000,1000000] [--seconds 8]
                           [--connections 50]

One throwaway database and one `lomash serve` (as bench.booking starts them). For each
size, the appointments table is grown to that many existing bookings (and as many
idempotency keys): history, in a showroom of its own (``GROWTH_CONSULTANTS``
consultants, hourly, before today, COMPLETED), which the booking transaction's
exclusion constraint, the per-customer cap's indexes and availability must look past;
ANALYZEd; then, as at size 0:

- bookings of distinct slots in the bench showroom (bench/booking.lua, as in
  bench.booking's ``distinct`` variant, without emptying the tables first);
- ``GET /v1/appointments/availability`` of a week of a two-consultant showroom, with
  wrk (the first request fills the cache; the rest are warm hits);

and the plans of the queries the rows make heavier (``EXPLAIN (ANALYZE, BUFFERS)``):
the overlap check the exclusion constraint makes, the per-customer count, an
idempotency-key lookup, a week of a showroom's bookings. Prints bookings/s,
availability p99 and each as a ratio of size 0's. Exits 1 if a run had errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import asyncpg

from adapters import staffed_showroom_sql
from bench.booking import services
from bench.booking_data import Slots, delete_redis_keys, seed, settled_counts
from bench.booking_load import run_http
from bench.http import bench_database, wrk

GROWTH_SHOWROOM = "growth-sr"
GROWTH_CONSULTANTS = 300  # 1 M rows: 3,334 hours each, about 139 days of history
SMALL_SHOWROOM = "growth-small"  # two consultants: a real showroom's availability

_SEED = staffed_showroom_sql(
    GROWTH_SHOWROOM, consultants=GROWTH_CONSULTANTS, prefix="growth-c", hours=("09:00", "17:00")
) + staffed_showroom_sql(SMALL_SHOWROOM, consultants=2, prefix="small-", hours=("09:00", "17:00"))

# Rows first .. last-1: consultant n % C, hour n / C before today 00:00 UTC, done
# (COMPLETED): the history a busy retailer accumulates, which the booking
# transaction and availability (about days to come) must not pay for.
_GROW = f"""
INSERT INTO appointments (id, reference, type, category, status, consultant_id,
    showroom_id, starts_at, ends_at, customer_name, customer_email, customer_phone,
    customer_postcode, manage_token_hash)
SELECT gen_random_uuid(), 'LW-GROW-' || n, 'SHOWROOM', 'KITCHEN', 'COMPLETED',
    'growth-c' || lpad((n % {GROWTH_CONSULTANTS})::text, 3, '0'), '{GROWTH_SHOWROOM}',
    $3::timestamptz - (n / {GROWTH_CONSULTANTS} + 1) * interval '1 hour',
    $3::timestamptz - (n / {GROWTH_CONSULTANTS}) * interval '1 hour',
    'Growth ' || n, 'growth-' || n || '@example.com', '+44 7' || lpad(n::text, 9, '0'),
    'LS1 1AA', '\\x00'::bytea
FROM generate_series($1::bigint, $2::bigint - 1) AS n;
"""
_KEYS = """
INSERT INTO idempotency_keys (key, request_hash, status, response)
SELECT 'growth-' || n, '\\x00'::bytea, 201, '{}' FROM generate_series($1::bigint, $2::bigint - 1) n;
"""
_PLANS = {
    "overlap check (the exclusion constraint's)": """
        SELECT 1 FROM appointments WHERE consultant_id = 'growth-c007'
        AND tstzrange(starts_at, ends_at) && tstzrange($1::timestamptz, $1::timestamptz
            + interval '1 hour')
        AND status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED')""",
    "per-customer cap (by e-mail)": """
        SELECT count(*) FROM appointments WHERE lower(customer_email) = 'growth-7@example.com'
        AND status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED')""",
    "idempotency key": "SELECT status FROM idempotency_keys WHERE key = 'growth-77'",
    "a week of bookings (availability's query)": """
        SELECT consultant_id, starts_at FROM appointments
        WHERE status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED')
        AND starts_at < $1::timestamptz + interval '7 days' AND ends_at > $1::timestamptz""",
}


_EMPTY = """
DELETE FROM appointments WHERE showroom_id IS DISTINCT FROM 'growth-sr';
DELETE FROM idempotency_keys WHERE key NOT LIKE 'growth-%';
DELETE FROM outbox;
"""


def _empty_bench_rows(url: str) -> None:
    """What the booking runs wrote (the grown history stays), once the answers still
    in flight have committed: each run starts with none of its customers' bookings
    (the per-customer cap counts them)."""
    settled_counts(url)

    async def empty() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(_EMPTY)
        finally:
            await connection.close()

    asyncio.run(empty())


def _tomorrow() -> datetime:
    return (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


async def _grow(url: str, have: int, want: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        start = _tomorrow() - timedelta(days=1)  # today 00:00 UTC: history before it
        step = 100_000
        for first in range(have, want, step):
            last = min(want, first + step)
            await connection.execute(_GROW, first, last, start)
            await connection.execute(_KEYS, first, last)
        # Vacuumed now, not by autovacuum in the middle of the next measured run; and
        # checkpointed, as bench.booking does before each run: the growth's WAL is not
        # the measured run's to write out.
        for table in ("appointments", "idempotency_keys"):
            await connection.execute(f"VACUUM (ANALYZE) {table}")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def _plans(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    lines = []
    try:
        when = _tomorrow() + timedelta(days=3)
        for name, sql in _PLANS.items():
            args = (when,) if "$1" in sql else ()
            rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            plan = [r[0] for r in rows]
            lines.append(f"  {name}:")
            lines += [f"    {line}" for line in plan if not line.startswith("Planning:")]
    finally:
        await connection.close()
    return lines


async def _seed_both(url: str) -> None:
    await seed(url)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(_SEED)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="bookings and availability as data grows")
    parser.add_argument("--sizes", default="0,10000,100000,1000000")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    prefix = f"lomash_bench:{os.urandom(4).hex()}:"
    slots = Slots(datetime.now(UTC))
    day = (_tomorrow() + timedelta(days=3)).date()
    query = f"type=SHOWROOM&showroom_id={SMALL_SHOWROOM}&category=KITCHEN"
    query += f"&from={day}&to={day + timedelta(days=6)}"
    rows: list[tuple[int, float, float, float]] = []
    plans: dict[int, list[str]] = {}
    errors = 0
    with ExitStack() as stack, tempfile.TemporaryFile() as log:
        stack.callback(delete_redis_keys, prefix)
        database = stack.enter_context(bench_database(_seed_both))
        ours = stack.enter_context(services(database, args.workers, prefix, {"ours": log}))["ours"]
        have = 0
        # A first round, not reported: the service's first runs are slower (its caches,
        # Postgres's buffers), which would flatter every size after the first.
        run_http(
            ours.url("/v1/appointments"),
            database,
            ours.process,
            args,
            "distinct",
            slots,
            "warm",
            empty=_empty_bench_rows,
        )
        for size in sizes:
            print(f"growing to {size:,} appointments ...", flush=True)
            asyncio.run(_grow(database, have, size))
            have = size
            booked = run_http(
                ours.url("/v1/appointments"),
                database,
                ours.process,
                args,
                "distinct",
                slots,
                f"g{size}",
                empty=_empty_bench_rows,
            )
            availability = ours.url(f"/v1/appointments/availability?{query}")
            wrk(availability, 2, args.connections)  # warm-up (fills the cache)
            read = wrk(availability, args.seconds, args.connections)
            print(
                f"  bookings {booked.statuses}, {booked.socket_errors} socket errors;"
                f" availability: {read.errors} non-2xx",
                flush=True,
            )
            errors += read.errors + booked.socket_errors
            errors += sum(n for status, n in booked.statuses.items() if status not in (201, 409))
            rows.append((size, booked.requests_per_s, booked.p99_ms, read.p99_ms))
            plans[size] = asyncio.run(_plans(database))
    base = rows[0]
    print(f"growth: {args.seconds}s per run, {args.connections} connections, {args.workers} worker")
    print(f"{'appointments':>13} {'bookings/s':>11} {'x size 0':>9} {'avail p99 ms':>13} {'x':>6}")
    for size, rate, _, p99 in rows:
        print(
            f"{size:>13,} {rate:>11.0f} {rate / base[1]:>8.2f}x {p99:>13.2f} {p99 / base[3]:>5.2f}x"
        )
    for size in (sizes[0], sizes[-1]):
        print(f"plans at {size:,} appointments:")
        print("\n".join(plans[size]))
    if errors:
        sys.exit(f"invalid run: {errors} answers that were not 201/409/200")


if __name__ == "__main__":
    main()
