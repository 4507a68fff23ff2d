"""The Notifier: the ``notifications`` queue's jobs become an email and an SMS.

For ``appointment.confirmed | cancelled | rescheduled`` and ``order.paid |
payment_failed | refunded`` it reads the booking's or order's *current* state (a
confirmation for a booking cancelled meanwhile, or a move superseded by a later one,
is not sent: a SKIPPED row says why), renders the messages (actors/_notices.py) and:

- email: SES (its sender retries 3 times with backoff), then SMTP; if neither takes
  it, it goes to the dead-letter store (``failed_messages``) with every attempt's
  error, and ``notifications.retry_failed`` (the 15-minute cron) retries it until 24 h
  after its first attempt; then it is FAILED and an alert goes out.
- SMS, when the customer gave a number: Twilio (retried once at once), then MSG91;
  if both fail, a FAILED row and no retry: the email is the redundant channel.

Exactly once per provider acceptance, as far as it can be: a message a provider took
is recorded (``record_effect_once``, with its SENT row) before the job completes, and
a redelivered job skips every channel already recorded. What stays at-least-once is
the gap between a provider's acceptance and that record (the worker dies right
then, or Postgres is down at that moment): that message can be sent twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
import trio

from actors._notices import (
    APPOINTMENT_KINDS,
    ORDER_KINDS,
    Rendered,
    render_appointment,
    render_order,
    sms_number,
)
from actors._senders import Deliver, Sender
from adapters import (
    AttemptNote,
    Channel,
    Email,
    FailedEmail,
    LogEntry,
    LogStatus,
    NotificationStore,
    RecipientRefused,
    Sms,
    mask,
)
from config import EmailSettings, NotificationSettings
from jobs import Clock, DeadLetterAlerts, Job, RetryLater, RunJob
from supervisors import LomashError, is_outage

__all__ = ["RETRY_FAILED_KIND", "Notifier", "Providers", "notification_kinds"]

RETRY_FAILED_KIND = "notifications.retry_failed"

log = structlog.get_logger("actors.notifier")


def notification_kinds() -> frozenset[str]:
    """Every job kind the Notifier handles."""
    return APPOINTMENT_KINDS | ORDER_KINDS | {RETRY_FAILED_KIND}


@dataclass(frozen=True, slots=True)
class Providers:
    """The senders, each channel's in the order they are tried: (provider, sender)."""

    email: Sequence[tuple[str, Sender]]
    sms: Sequence[tuple[str, Sender]]


@dataclass(frozen=True, slots=True)
class _Subject:
    """What one job is about: whom to tell, what, and whether it still holds."""

    reference: str
    subject_id: str
    email: str
    phone: str
    rendered: Rendered | None  # None: superseded (``why`` says how)
    why: str = ""


@dataclass(slots=True)
class _Tried:
    """One channel's run through its providers."""

    notes: list[AttemptNote] = field(default_factory=list)
    sent_by: str | None = None
    message_id: str | None = None
    refused_only: bool = True  # every failure was a refused recipient


class Notifier:
    def __init__(
        self,
        store: NotificationStore,
        providers: Providers,
        settings: NotificationSettings,
        email: EmailSettings,
        alerts: DeadLetterAlerts,
        *,
        token_key: bytes,
        clock: Clock,
        retry_budget_s: float,
        outage_retry_s: float,
    ) -> None:
        self._store = store
        self._providers = providers
        self._settings = settings
        self._email = email
        self._alerts = alerts
        self._token_key = token_key
        self._clock = clock
        self._retry_budget_s = retry_budget_s
        self._outage_retry_s = outage_retry_s

    async def handle(self, message: RunJob) -> str:
        try:
            if message.job.kind == RETRY_FAILED_KIND:
                return await self._retry_failed()
            return await self._notify(message.job)
        except LomashError as error:
            if is_outage(error):  # our database: wait it out, uncounted
                raise RetryLater(error.message, after_s=self._outage_retry_s) from error
            raise

    # -- one job -------------------------------------------------------------------

    async def _notify(self, job: Job) -> str:
        subject = await self._subject(job)
        if subject is None:
            log.warning("notification_subject_missing", kind=job.kind)
            return "missing"
        if subject.rendered is None:
            skipped = self._entry(
                job, subject, Channel.EMAIL, "-", LogStatus.SKIPPED, error=subject.why
            )
            await self._store.record([skipped])
            log.info("notification_skipped", kind=job.kind, why=subject.why)
            return "skipped"
        done = await self._store.delivered(job.id)
        if not self._providers.email:  # only outside production (checked at start)
            unsent = self._entry(
                job, subject, Channel.EMAIL, "-", LogStatus.SKIPPED, error="no email provider"
            )
            await self._store.record([unsent])
        elif Channel.EMAIL not in done:
            await self._send_email(job, subject, subject.rendered.email(subject.email))
        number = sms_number(subject.phone)
        if number is not None and self._providers.sms and Channel.SMS not in done:
            sms = Sms(to=number, body=subject.rendered.sms, reference=subject.reference)
            await self._send_sms(job, subject, sms)
        return "sent"

    async def _subject(self, job: Job) -> _Subject | None:
        """Whom to tell and what, from the current state; None if it is gone."""
        if job.kind in APPOINTMENT_KINDS:
            return await self._appointment(job)
        if job.kind in ORDER_KINDS:
            order = await self._store.order(str(job.payload.get("order_id", "")))
            if order is None:
                return None
            if job.kind == "order.payment_failed" and order.status == "PAID":
                return _Subject(
                    order.reference,
                    order.id,
                    order.email,
                    order.phone,
                    None,
                    "the order was paid since",
                )
            rendered = render_order(job.kind, order, self._settings, token_key=self._token_key)
            return _Subject(order.reference, order.id, order.email, order.phone, rendered)
        return None

    async def _appointment(self, job: Job) -> _Subject | None:
        facts = await self._store.appointment(str(job.payload.get("appointment_id", "")))
        if facts is None:
            return None
        moved_to = _instant(job.payload.get("start"))
        why = ""
        if job.kind != "appointment.cancelled" and facts.status == "CANCELLED":
            why = "the booking was cancelled since"
        elif job.kind == "appointment.rescheduled" and moved_to not in (None, facts.start):
            why = "the booking moved again since"
        rendered = None
        if not why:
            rendered = render_appointment(
                job.kind,
                facts,
                self._settings,
                token_key=self._token_key,
                previous_start=_instant(job.payload.get("previous_start")),
            )
        return _Subject(facts.reference, facts.id, facts.email, facts.phone, rendered, why)

    async def _send_email(self, job: Job, subject: _Subject, email: Email) -> None:
        tried = await self._attempt(self._providers.email, email)
        rows = self._rows(job, subject, Channel.EMAIL, tried)
        if tried.sent_by is not None:
            await self._record_sent(job, Channel.EMAIL, rows)
            return
        if tried.refused_only:  # every provider answered "not this address"
            await self._store.record(_closing(rows))
            log.warning("email_refused", kind=job.kind)
            return
        first = tried.notes[0].at if tried.notes else self._clock.now()
        await self._store.keep_failed(
            FailedEmail(
                job_id=job.id,
                kind=job.kind,
                reference=subject.reference,
                subject_id=subject.subject_id,
                email=email,
                first_attempt_at=first,
                retry_until=first + timedelta(seconds=self._email.retry_window_s),
                attempts=tuple(tried.notes),
            )
        )
        await self._store.record(rows)
        log.warning("email_dead_lettered", kind=job.kind, attempts=len(tried.notes))

    async def _send_sms(self, job: Job, subject: _Subject, sms: Sms) -> None:
        tried = await self._attempt(self._providers.sms, sms)
        rows = self._rows(job, subject, Channel.SMS, tried)
        if tried.sent_by is not None:
            await self._record_sent(job, Channel.SMS, rows)
            return
        await self._store.record(_closing(rows))
        log.warning("sms_failed", kind=job.kind, attempts=len(tried.notes))

    async def _record_sent(self, job: Job, channel: Channel, rows: list[LogEntry]) -> None:
        if not await self._store.record(rows, sent=(job.id, channel)):
            log.info("notification_already_recorded", channel=channel.value)

    async def _attempt(self, providers: Sequence[tuple[str, Sender]], item: Email | Sms) -> _Tried:
        """Each provider in turn until one takes ``item``; every failed attempt noted."""
        tried = _Tried()
        for name, sender in providers:
            message = Deliver(item)
            try:
                tried.message_id = await sender.ask(message)
            except LomashError as error:
                tried.notes += message.trail
                last = message.trail[-1] if message.trail else None
                if last is None or last.error != error.message:  # refused before running:
                    tried.notes.append(  # the breaker open, the mailbox full, ...
                        AttemptNote(name, self._clock.now(), type(error).__name__, error.message)
                    )
                tried.refused_only &= isinstance(error, RecipientRefused)
                continue
            tried.notes += message.trail
            tried.sent_by = name
            return tried
        tried.refused_only &= bool(tried.notes)
        return tried

    # -- the 15-minute retry of dead-lettered email -------------------------------------

    async def _retry_failed(self) -> str:
        deadline = trio.current_time() + self._retry_budget_s
        due = await self._store.due_failed(self._settings.retry_batch)
        delivered = expired = retried = 0
        for failed in due:
            if trio.current_time() >= deadline:
                break  # the rest on the next run
            now = self._clock.now()
            if now >= failed.retry_until:
                await self._expire(failed, now)
                expired += 1
                continue
            job = Job(failed.job_id, "notifications", failed.kind, {}, 1, 0.0)
            subject = _Subject(failed.reference, failed.subject_id, failed.email.to, "", None)
            if Channel.EMAIL in await self._store.delivered(failed.job_id):
                await self._store.close_failed(failed, "DELIVERED", [], sent=False)
                continue
            tried = await self._attempt(self._providers.email, failed.email)
            if tried.sent_by is not None:
                rows = self._rows(job, subject, Channel.EMAIL, tried)
                await self._store.close_failed(failed, "DELIVERED", rows, sent=True)
                delivered += 1
            else:
                await self._store.retried(failed, tried.notes)
                retried += 1
        log.info(
            "failed_email_retried",
            due=len(due),
            delivered=delivered,
            retried=retried,
            expired=expired,
        )
        return f"{delivered} delivered, {retried} still failing, {expired} expired"

    async def _expire(self, failed: FailedEmail, now: datetime) -> None:
        last = failed.attempts[-1] if failed.attempts else None
        last_error = f"{last.error_type}: {last.error}" if last else "never attempted"
        job = Job(failed.job_id, "notifications", failed.kind, {}, 1, 0.0)
        subject = _Subject(failed.reference, failed.subject_id, failed.email.to, "", None)
        entry = self._entry(
            job,
            subject,
            Channel.EMAIL,
            "-",
            LogStatus.FAILED,
            error=f"undelivered after {self._email.retry_window_s / 3600:g} h; last: {last_error}",
            at=now,
        )
        await self._store.close_failed(failed, "FAILED", [entry], sent=False)
        await self._alerts.email_undelivered(
            job_id=failed.job_id,
            kind=failed.kind,
            reference=failed.reference,
            attempts=len(failed.attempts),
            last_error=last_error,
        )

    # -- records -------------------------------------------------------------------------

    def _entry(
        self,
        job: Job,
        subject: _Subject,
        channel: Channel,
        provider: str,
        status: LogStatus,
        *,
        message_id: str | None = None,
        error: str | None = None,
        at: datetime | None = None,
    ) -> LogEntry:
        if channel is Channel.EMAIL:
            recipient = subject.email
        else:
            recipient = sms_number(subject.phone) or subject.phone
        return LogEntry(
            job_id=job.id,
            kind=job.kind,
            reference=subject.reference,
            channel=channel,
            provider=provider,
            recipient=mask(recipient) if recipient else "-",
            status=status,
            attempted_at=at or self._clock.now(),
            provider_message_id=message_id,
            error=error[:1000] if error else None,
        )

    def _rows(self, job: Job, subject: _Subject, channel: Channel, tried: _Tried) -> list[LogEntry]:
        """A row per failed attempt (RETRYING: something else follows), then SENT."""
        rows = [
            self._entry(
                job,
                subject,
                channel,
                n.provider,
                LogStatus.RETRYING,
                error=f"{n.error_type}: {n.error}",
                at=n.at,
            )
            for n in tried.notes
        ]
        if tried.sent_by is not None:
            rows.append(
                self._entry(
                    job,
                    subject,
                    channel,
                    tried.sent_by,
                    LogStatus.SENT,
                    message_id=tried.message_id,
                )
            )
        return rows


def _instant(value: object) -> datetime | None:
    """An ISO 8601 instant from a job's payload, if it holds one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _closing(rows: list[LogEntry]) -> list[LogEntry]:
    """The rows of a channel that gave up: its last attempt FAILED, not RETRYING."""
    if not rows:
        return rows
    return [*rows[:-1], dataclasses.replace(rows[-1], status=LogStatus.FAILED)]
