"""What the notifier sends and keeps: messages, provider Protocols, log and dead-letter
records, and the ``NotificationStore`` Protocol (Postgres: ``_notification_store.py``;
in-process, on trio's clock: ``_notification_store_memory.py``).

Providers raise the project's errors only (translated in their adapters):
``UpstreamError`` for throttling and 5xx, ``ConnectionLost`` / ``OperationTimeout``
for an unreachable or silent provider (outages: its breaker counts them, the
mailbox retries them), ``RecipientRefused`` when the provider answered that this
address or number cannot be sent to (an answer, not an outage), and
``DependencyError`` for our own misconfiguration (a bad key, an unverified sender).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from supervisors import DomainError

__all__ = [
    "AppointmentFacts",
    "AttemptNote",
    "Channel",
    "Email",
    "EmailProvider",
    "FailedEmail",
    "LogEntry",
    "LogStatus",
    "NotificationStore",
    "OrderFacts",
    "RecipientRefused",
    "ShowroomFacts",
    "Sms",
    "SmsProvider",
    "mask",
]


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class LogStatus(StrEnum):
    SENT = "SENT"  # the provider accepted it
    RETRYING = "RETRYING"  # this attempt failed; another provider or a later retry follows
    FAILED = "FAILED"  # the last attempt failed; nothing further will be tried
    SKIPPED = "SKIPPED"  # not sent on purpose (already sent, superseded, no recipient)


class RecipientRefused(DomainError):
    """The provider answered that it will not send to this recipient (a malformed or
    unsubscribed number, a rejected address): not an outage, never retried."""

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Sms:
    to: str  # E.164
    body: str
    reference: str


class EmailProvider(Protocol):
    name: str

    async def send(self, email: Email) -> str:
        """Hand the email over; the provider's message id."""
        ...


class SmsProvider(Protocol):
    name: str

    async def send(self, sms: Sms) -> str:
        """Hand the SMS over; the provider's message id."""
        ...


@dataclass(frozen=True, slots=True)
class ShowroomFacts:
    name: str
    address: str
    city: str
    postcode: str


@dataclass(frozen=True, slots=True)
class AppointmentFacts:
    id: str
    reference: str
    kind: str  # HOME_MEASUREMENT | ONLINE | SHOWROOM
    status: str
    start: datetime
    end: datetime
    customer_name: str
    email: str
    phone: str
    showroom: ShowroomFacts | None
    previous_start: datetime | None = None
    status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class OrderFacts:
    id: str
    reference: str
    status: str
    subtotal_pence: int
    vat_pence: int
    total_pence: int
    currency: str
    customer_name: str
    email: str
    phone: str
    lines: tuple[tuple[str, int, int], ...] = ()  # (product name, quantity, unit pence)


@dataclass(frozen=True, slots=True)
class AttemptNote:
    """One provider attempt that did not deliver (kept with a dead-lettered email)."""

    provider: str
    at: datetime
    error_type: str
    error: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A ``notification_logs`` row."""

    job_id: str
    kind: str
    reference: str
    channel: Channel
    provider: str
    recipient: str  # masked
    status: LogStatus
    attempted_at: datetime
    provider_message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FailedEmail:
    """A ``failed_messages`` row: an email no provider took, kept rendered."""

    job_id: str
    kind: str
    reference: str
    subject_id: str
    email: Email
    first_attempt_at: datetime
    retry_until: datetime
    attempts: tuple[AttemptNote, ...] = ()
    retries: int = 0
    status: str = "PENDING"
    id: int | None = field(default=None, compare=False)


def mask(recipient: str) -> str:
    """Enough of an address or number for support to recognise it, not to use it:
    ``j***@example.com``, ``+44*******123``."""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    keep = 3 if len(recipient) > 6 else 1
    head = recipient[:3] if recipient.startswith("+") and len(recipient) > 8 else ""
    hidden = len(recipient) - len(head) - keep
    return f"{head}{'*' * max(hidden, 0)}{recipient[-keep:]}"


class NotificationStore(Protocol):
    async def appointment(self, appointment_id: str) -> AppointmentFacts | None: ...

    async def order(self, order_id: str) -> OrderFacts | None: ...

    async def delivered(self, job_id: str) -> frozenset[Channel]:
        """The channels whose message for this job a provider already accepted."""
        ...

    async def record(
        self, entries: Sequence[LogEntry], *, sent: tuple[str, Channel] | None = None
    ) -> bool:
        """Write log rows; with ``sent`` (job id, channel) also record, once, that its
        message was accepted (``record_effect_once``), atomically with the rows.
        False if that acceptance was recorded before (nothing is written then)."""
        ...

    async def keep_failed(self, failed: FailedEmail) -> None:
        """Dead-letter an email (once per job: a later call adds its attempts)."""
        ...

    async def due_failed(self, limit: int) -> list[FailedEmail]:
        """PENDING dead-lettered emails, oldest first."""
        ...

    async def retried(self, failed: FailedEmail, notes: Sequence[AttemptNote]) -> None:
        """A retry failed: add its attempts and count it."""
        ...

    async def close_failed(
        self, failed: FailedEmail, status: str, entries: Sequence[LogEntry], *, sent: bool
    ) -> None:
        """Close it (DELIVERED, FAILED or SKIPPED) with its log rows; ``sent`` records
        the job's email as accepted, once, in the same transaction."""
        ...

    async def logs(self, reference: str, *, limit: int) -> list[LogEntry]:
        """A booking's or order's log rows, oldest first."""
        ...

    async def recent_logs(self, *, limit: int) -> list[LogEntry]:
        """The latest log rows of every booking and order, newest first."""
        ...
