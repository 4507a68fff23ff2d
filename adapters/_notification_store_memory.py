"""``NotificationStore`` in process, for simulations on trio's virtual clock (real
sockets and a virtual clock do not mix). Same semantics as the Postgres store: a
message's acceptance is recorded once, a dead-lettered email once per job."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from adapters._notifications import (
    AppointmentFacts,
    AttemptNote,
    Channel,
    FailedEmail,
    LogEntry,
    OrderFacts,
)

__all__ = ["MemoryNotificationStore"]


class MemoryNotificationStore:
    def __init__(self) -> None:
        self.appointments: dict[str, AppointmentFacts] = {}
        self.orders: dict[str, OrderFacts] = {}
        self.entries: list[LogEntry] = []
        self.failed: dict[str, FailedEmail] = {}
        self._accepted: set[tuple[str, Channel]] = set()

    async def appointment(self, appointment_id: str) -> AppointmentFacts | None:
        return self.appointments.get(appointment_id)

    async def order(self, order_id: str) -> OrderFacts | None:
        return self.orders.get(order_id)

    async def delivered(self, job_id: str) -> frozenset[Channel]:
        return frozenset(c for j, c in self._accepted if j == job_id)

    async def record(
        self, entries: Sequence[LogEntry], *, sent: tuple[str, Channel] | None = None
    ) -> bool:
        if sent is not None:
            if sent in self._accepted:
                return False
            self._accepted.add(sent)
        self.entries.extend(entries)
        return True

    async def keep_failed(self, failed: FailedEmail) -> None:
        known = self.failed.get(failed.job_id)
        if known is None:
            self.failed[failed.job_id] = failed
        else:
            self.failed[failed.job_id] = dataclasses.replace(
                known, attempts=known.attempts + failed.attempts
            )

    async def due_failed(self, limit: int) -> list[FailedEmail]:
        pending = [f for f in self.failed.values() if f.status == "PENDING"]
        return sorted(pending, key=lambda f: f.first_attempt_at)[:limit]

    async def retried(self, failed: FailedEmail, notes: Sequence[AttemptNote]) -> None:
        known = self.failed[failed.job_id]
        if known.status == "PENDING":
            self.failed[failed.job_id] = dataclasses.replace(
                known, attempts=known.attempts + tuple(notes), retries=known.retries + 1
            )

    async def close_failed(
        self, failed: FailedEmail, status: str, entries: Sequence[LogEntry], *, sent: bool
    ) -> None:
        known = self.failed[failed.job_id]
        if known.status != "PENDING":
            return
        delivered = 1 if status == "DELIVERED" else 0
        self.failed[failed.job_id] = dataclasses.replace(
            known, status=status, retries=known.retries + delivered
        )
        if sent:
            self._accepted.add((failed.job_id, Channel.EMAIL))
        self.entries.extend(entries)

    async def logs(self, reference: str, *, limit: int) -> list[LogEntry]:
        return [e for e in self.entries if e.reference == reference][:limit]

    async def recent_logs(self, *, limit: int) -> list[LogEntry]:
        return list(reversed(self.entries))[:limit]
