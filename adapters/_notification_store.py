"""The notifier's records in Postgres: ``notification_logs``, ``failed_messages``, and
the acceptance of each message in ``job_effects`` (``record_effect_once``), so a job
redelivered after its worker died sends nothing a provider already took."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from adapters._notifications import (
    AppointmentFacts,
    AttemptNote,
    Channel,
    Email,
    FailedEmail,
    LogEntry,
    LogStatus,
    OrderFacts,
    ShowroomFacts,
)
from adapters._outbox import record_effect_once
from adapters._postgres import Connection, Database

__all__ = ["PostgresNotificationStore", "effect_name"]


def effect_name(channel: Channel) -> str:
    """The ``job_effects`` effect that says a job's message on ``channel`` was accepted."""
    return f"notify:{channel.value}"


_APPOINTMENT = """
SELECT a.id::text, a.reference, a.type, a.status, a.starts_at, a.ends_at, a.customer_name,
       a.customer_email, a.customer_phone, a.previous_starts_at, a.status_reason,
       s.name, s.address, s.city, s.postcode
FROM appointments a LEFT JOIN showrooms s ON s.id = a.showroom_id
WHERE a.id = $1
"""

_ORDER = """
SELECT o.id::text, o.reference, o.status, o.subtotal_pence, o.vat_pence, o.total_pence,
       o.currency, o.customer_name, o.customer_email, o.customer_phone,
       coalesce(array_agg(p.name ORDER BY l.line_no) FILTER (WHERE l.line_no IS NOT NULL),
                '{}') AS names,
       coalesce(array_agg(l.quantity ORDER BY l.line_no) FILTER (WHERE l.line_no IS NOT NULL),
                '{}') AS quantities,
       coalesce(array_agg(l.unit_price_pence ORDER BY l.line_no)
                FILTER (WHERE l.line_no IS NOT NULL), '{}') AS prices
FROM orders o
LEFT JOIN order_lines l ON l.order_id = o.id
LEFT JOIN products p ON p.id = l.product_id
WHERE o.id = $1
GROUP BY o.id
"""

_INSERT_LOGS = """
INSERT INTO notification_logs (job_id, kind, reference, channel, provider, recipient, status,
                               provider_message_id, error, attempted_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::timestamptz[])
"""

_FAILED_COLUMNS = """id, job_id, kind, reference, subject_id, recipient, subject, text_body,
html_body, status, attempts, retries, first_attempt_at, retry_until"""

_KEEP_FAILED = """
INSERT INTO failed_messages (job_id, kind, reference, subject_id, recipient, subject, text_body,
                             html_body, attempts, first_attempt_at, retry_until, last_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)
ON CONFLICT (job_id) DO UPDATE
SET attempts = failed_messages.attempts || EXCLUDED.attempts,
    last_attempt_at = EXCLUDED.last_attempt_at
"""


_LOG_SELECT = """SELECT job_id, kind, reference, channel, provider, recipient, status,
    attempted_at, provider_message_id, error FROM notification_logs"""


def _log_entry(r: Any) -> LogEntry:
    return LogEntry(
        job_id=r["job_id"],
        kind=r["kind"],
        reference=r["reference"],
        channel=Channel(r["channel"]),
        provider=r["provider"],
        recipient=r["recipient"],
        status=LogStatus(r["status"]),
        attempted_at=r["attempted_at"],
        provider_message_id=r["provider_message_id"],
        error=r["error"],
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _notes_json(notes: Sequence[AttemptNote]) -> str:
    return json.dumps(
        [
            {"provider": n.provider, "at": n.at.isoformat(), "type": n.error_type, "error": n.error}
            for n in notes
        ]
    )


def _failed(row: Any) -> FailedEmail:
    notes = tuple(
        AttemptNote(n["provider"], datetime.fromisoformat(n["at"]), n["type"], n["error"])
        for n in json.loads(row["attempts"])
    )
    return FailedEmail(
        id=row["id"],
        job_id=row["job_id"],
        kind=row["kind"],
        reference=row["reference"],
        subject_id=row["subject_id"],
        email=Email(row["recipient"], row["subject"], row["text_body"], row["html_body"]),
        status=row["status"],
        attempts=notes,
        retries=row["retries"],
        first_attempt_at=row["first_attempt_at"],
        retry_until=row["retry_until"],
    )


async def _insert_logs(connection: Connection, entries: Sequence[LogEntry]) -> None:
    if not entries:
        return
    await connection.execute(
        _INSERT_LOGS,
        [e.job_id for e in entries],
        [e.kind for e in entries],
        [e.reference for e in entries],
        [e.channel.value for e in entries],
        [e.provider for e in entries],
        [e.recipient for e in entries],
        [e.status.value for e in entries],
        [e.provider_message_id for e in entries],
        [e.error for e in entries],
        [e.attempted_at for e in entries],
    )


class PostgresNotificationStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def appointment(self, appointment_id: str) -> AppointmentFacts | None:
        key = _uuid(appointment_id)
        if key is None:
            return None

        async def operation(connection: Connection) -> AppointmentFacts | None:
            row = await connection.fetchrow(_APPOINTMENT, key)
            if row is None:
                return None
            showroom = (
                ShowroomFacts(row["name"], row["address"], row["city"], row["postcode"])
                if row["name"] is not None
                else None
            )
            return AppointmentFacts(
                id=row[0],
                reference=row["reference"],
                kind=row["type"],
                status=row["status"],
                start=row["starts_at"],
                end=row["ends_at"],
                customer_name=row["customer_name"],
                email=row["customer_email"],
                phone=row["customer_phone"],
                showroom=showroom,
                previous_start=row["previous_starts_at"],
                status_reason=row["status_reason"],
            )

        return await self._database.run(operation, readonly=True)

    async def order(self, order_id: str) -> OrderFacts | None:
        key = _uuid(order_id)
        if key is None:
            return None

        async def operation(connection: Connection) -> OrderFacts | None:
            row = await connection.fetchrow(_ORDER, key)
            if row is None:
                return None
            return OrderFacts(
                id=row[0],
                reference=row["reference"],
                status=row["status"],
                subtotal_pence=row["subtotal_pence"],
                vat_pence=row["vat_pence"],
                total_pence=row["total_pence"],
                currency=row["currency"],
                customer_name=row["customer_name"],
                email=row["customer_email"],
                phone=row["customer_phone"],
                lines=tuple(zip(row["names"], row["quantities"], row["prices"], strict=True)),
            )

        return await self._database.run(operation, readonly=True)

    async def delivered(self, job_id: str) -> frozenset[Channel]:
        async def operation(connection: Connection) -> frozenset[Channel]:
            rows = await connection.fetch(
                "SELECT effect FROM job_effects WHERE job_id = $1 AND effect = ANY($2::text[])",
                job_id,
                [effect_name(c) for c in Channel],
            )
            return frozenset(c for c in Channel if effect_name(c) in {r[0] for r in rows})

        return await self._database.run(operation, readonly=True)

    async def record(
        self, entries: Sequence[LogEntry], *, sent: tuple[str, Channel] | None = None
    ) -> bool:
        async def operation(connection: Connection) -> bool:
            async with connection.transaction():
                if sent is not None:
                    job_id, channel = sent
                    if not await record_effect_once(connection, job_id, effect_name(channel)):
                        return False
                await _insert_logs(connection, entries)
                return True

        return await self._database.run(operation)

    async def keep_failed(self, failed: FailedEmail) -> None:
        last = failed.attempts[-1].at if failed.attempts else failed.first_attempt_at

        async def operation(connection: Connection) -> None:
            await connection.execute(
                _KEEP_FAILED,
                failed.job_id,
                failed.kind,
                failed.reference,
                failed.subject_id,
                failed.email.to,
                failed.email.subject,
                failed.email.text,
                failed.email.html,
                _notes_json(failed.attempts),
                failed.first_attempt_at,
                failed.retry_until,
                last,
            )

        await self._database.run(operation, idempotent=True)

    async def due_failed(self, limit: int) -> list[FailedEmail]:
        async def operation(connection: Connection) -> list[FailedEmail]:
            rows = await connection.fetch(
                f"SELECT {_FAILED_COLUMNS} FROM failed_messages WHERE status = 'PENDING' "
                "ORDER BY first_attempt_at, id LIMIT $1",
                limit,
            )
            return [_failed(row) for row in rows]

        return await self._database.run(operation, readonly=True)

    async def retried(self, failed: FailedEmail, notes: Sequence[AttemptNote]) -> None:
        last = notes[-1].at if notes else None

        async def operation(connection: Connection) -> None:
            await connection.execute(
                """UPDATE failed_messages SET attempts = attempts || $2::jsonb,
                   retries = retries + 1, last_attempt_at = coalesce($3, last_attempt_at)
                   WHERE job_id = $1 AND status = 'PENDING'""",
                failed.job_id,
                _notes_json(notes),
                last,
            )

        await self._database.run(operation)

    async def close_failed(
        self, failed: FailedEmail, status: str, entries: Sequence[LogEntry], *, sent: bool
    ) -> None:
        closed_at = entries[-1].attempted_at if entries else failed.first_attempt_at

        async def operation(connection: Connection) -> None:
            async with connection.transaction():
                moved = await connection.fetchval(
                    """UPDATE failed_messages SET status = $2, closed_at = $3,
                       retries = retries + CASE WHEN $2 = 'DELIVERED' THEN 1 ELSE 0 END
                       WHERE job_id = $1 AND status = 'PENDING' RETURNING true""",
                    failed.job_id,
                    status,
                    closed_at,
                )
                if not moved:
                    return  # closed by another run meanwhile
                if sent:
                    await record_effect_once(connection, failed.job_id, effect_name(Channel.EMAIL))
                await _insert_logs(connection, entries)

        await self._database.run(operation)

    async def logs(self, reference: str, *, limit: int) -> list[LogEntry]:
        async def operation(connection: Connection) -> list[LogEntry]:
            rows = await connection.fetch(
                f"{_LOG_SELECT} WHERE reference = $1 ORDER BY id LIMIT $2", reference, limit
            )
            return [_log_entry(r) for r in rows]

        return await self._database.run(operation, readonly=True)

    async def recent_logs(self, *, limit: int) -> list[LogEntry]:
        async def operation(connection: Connection) -> list[LogEntry]:
            rows = await connection.fetch(f"{_LOG_SELECT} ORDER BY id DESC LIMIT $1", limit)
            return [_log_entry(r) for r in rows]

        return await self._database.run(operation, readonly=True)
