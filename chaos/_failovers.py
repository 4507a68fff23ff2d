"""The failover experiments: a real Postgres replica promoted, a real Redis replica
elected by Sentinels (the stacks from chaos/_clusters.py), under the same load and
invariants as the chaos table."""

from __future__ import annotations

from typing import ClassVar

import trio

from chaos._experiment import Context, Experiment
from chaos._faults import BOOKINGS, first

__all__ = ["PostgresFailover", "RedisFailover"]


class PostgresFailover(Experiment):
    name = "postgres-failover"
    title = "the Postgres primary stops; its synchronous replica is promoted"
    hypothesis = (
        "reads keep coming from the replica, bookings take the 202 path, and once the"
        " replica is promoted the service writes to it within the 30 s reconnect window"
        " without a restart; every 202 ends CONFIRMED"
    )
    postgres_pair = True
    window_s: ClassVar[float] = 30.0

    def __init__(self) -> None:
        self.promoted_at: float | None = None

    async def inject(self, context: Context) -> None:
        pair = context.stack.postgres_pair
        assert pair is not None
        await pair.stop_primary()
        context.action("postgres_primary_stopped", port=pair.primary_port)

    async def hold(self, context: Context) -> None:
        """The primary stays down for ``--duration`` (RDS takes ~60 s), then the
        replica is promoted."""
        await trio.sleep(context.options.duration_s)
        await self._promote(context)

    async def _promote(self, context: Context) -> None:
        pair = context.stack.postgres_pair
        assert pair is not None
        if not pair.promoted:
            took = await pair.promote()
            self.promoted_at = context.load.now_s()
            context.action("replica_promoted", port=pair.replica_port, took_s=round(took, 2))

    async def rollback(self, context: Context) -> None:
        await self._promote(context)  # interrupted early: the stack needs a primary

    def judge(self, context: Context) -> None:
        start, _ = context.fault_window()
        promoted = self.promoted_at
        if promoted is None:
            context.expect("promoted", False, "the replica was never promoted")
            return
        written = [
            b.at_s
            for b in context.load.accepted
            if b.at_s > promoted and b.first_status == "CONFIRMED"
        ]
        written_at = first(written)
        if written_at is None:
            context.expect("writes within the reconnect window", False, "no 201 after it")
            return
        context.measure("write_gap_s", round(written_at - start, 2))
        context.measure("writes_after_promotion_s", round(written_at - promoted, 2))
        context.expect(
            "writes within the reconnect window",
            written_at - promoted <= self.window_s,
            f"first 201 {written_at - promoted:.2f} s after the promotion",
        )
        gap = context.answers(BOOKINGS, start + 1, promoted)
        pending = [a for a in gap if a.status == 202]
        context.measure("bookings_pending_during_gap", len(pending))
        context.expect(
            "bookings take the 202 path",
            bool(pending) and all(a.status in (202, 409, 503) for a in gap),
            f"statuses during the gap: {sorted({a.status for a in gap})}",
        )
        reads = context.answers(("read",), start + 1, promoted)
        served = [a for a in reads if a.status == 200]
        context.measure("reads_served_during_gap", f"{len(served)} of {len(reads)}")
        context.expect(
            "reads from the replica",
            bool(reads) and len(served) == len(reads),
            f"{len(served)} of {len(reads)} reads answered 200 while the primary was down",
        )
        told = [h for h in context.load.health if start + 1 <= h.at_s < promoted]
        context.expect(
            "/health says the database is down",
            bool(told) and all(h.status in ("unhealthy", None) for h in told),
            f"statuses {sorted({str(h.status) for h in told})} while the primary was down",
        )


class RedisFailover(Experiment):
    name = "redis-failover"
    title = "the Redis primary is killed; the Sentinels promote its replica"
    hypothesis = (
        "degraded during the failover (rate limits open, locks fall back to the database"
        " constraint), then healthy on the promoted replica without a restart"
    )
    redis_sentinel = True

    async def inject(self, context: Context) -> None:
        group = context.stack.redis_sentinel
        assert group is not None
        port = group.primary_port
        await group.kill_primary()
        context.action("redis_primary_killed", port=port)

    async def hold(self, context: Context) -> None:
        group = context.stack.redis_sentinel
        assert group is not None
        took = await group.wait_promoted(timeout_s=context.options.duration_s + 30)
        context.action("replica_promoted_by_sentinels", after_s=round(took, 2))
        context.measure("sentinel_failover_s", round(took, 2))
        await trio.sleep(context.options.duration_s)

    async def rollback(self, context: Context) -> None:
        pass  # the Sentinels did it; the old primary stays down (a dead machine)

    def judge(self, context: Context) -> None:
        start, end = context.fault_window()
        after = [h for h in context.load.health if h.at_s >= start]
        degraded = [h.at_s for h in after if h.status == "degraded"]
        healthy = [
            h.at_s for h in after if degraded and h.at_s > degraded[0] and h.status == "healthy"
        ]
        context.expect(
            "/health says degraded, then healthy",
            bool(degraded) and bool(healthy),
            f"degraded after {degraded[0] - start:.2f} s, healthy after {healthy[0] - start:.2f} s"
            if degraded and healthy
            else f"statuses since the kill: {sorted({str(h.status) for h in after})}",
        )
        if healthy:
            context.measure("healthy_again_after_s", round(healthy[0] - start, 2))
        confirmed = [a for a in context.answers(BOOKINGS, start, end) if a.status == 201]
        context.expect(
            "bookings go on",
            bool(confirmed),
            f"{len(confirmed)} bookings answered 201 through the failover",
        )
