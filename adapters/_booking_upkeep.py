"""The booking store's other Postgres reads and upkeep: the consultants' schedule
rows (the roster's source) and forgetting old idempotency keys."""

from __future__ import annotations

from adapters._booking_records import ScheduleRows
from adapters._postgres import Connection, Operation

__all__ = ["load_schedule_rows", "trim_idempotency_keys"]


def load_schedule_rows() -> Operation[ScheduleRows]:
    async def operation(connection: Connection) -> ScheduleRows:
        showrooms = [r[0] for r in await connection.fetch("SELECT id FROM showrooms")]
        consultants = await connection.fetch(
            "SELECT id, name, showroom_id, specialisations FROM consultants WHERE active"
        )
        hours = await connection.fetch(
            "SELECT consultant_id, weekday, starts, ends FROM consultant_hours"
        )
        blocked = await connection.fetch(
            "SELECT consultant_id, day FROM consultant_blocked_days WHERE day >= current_date - 1"
        )
        return ScheduleRows(
            showrooms=showrooms,
            consultants=[(r[0], r[1], r[2], list(r[3])) for r in consultants],
            hours=[tuple(r) for r in hours],
            blocked=[tuple(r) for r in blocked],
        )

    return operation


def trim_idempotency_keys(older_than_s: float) -> Operation[int]:
    """Forget idempotency keys older than ``older_than_s``; how many were deleted."""

    async def operation(connection: Connection) -> int:
        result = await connection.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
            older_than_s,
        )
        return int(result.split()[-1])

    return operation
