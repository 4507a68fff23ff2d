"""The notification part of the tree: provider clients as resources, a sender actor
per configured provider (its own breaker and retries), and the Notifier.

    ses, twilio, msg91   Resource: a provider's client, when it is configured
    ses-sender ...       one actor per provider (actors/_senders.py)
    notifier             the ``notifications`` queue's handler (actors/_notifier.py)

With no SMS provider outside production, SMS is a log line (``LogSms``); with no
email provider, ``make run`` points SMTP at its local mail catcher first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors import (
    Notifier,
    Providers,
    Sender,
    notification_kinds,
    provider_retry,
    sender_spec,
    token_key,
)
from adapters import (
    Database,
    EmailProvider,
    LogSms,
    PostgresNotificationStore,
    SmsProvider,
    SmtpEmail,
    open_msg91,
    open_ses,
    open_twilio,
)
from config import Environment, Settings, email_send_s, notifier_mailbox
from jobs import Clock, DeadLetterAlerts, RunJob, SystemClock
from supervisors import ActorRef, ActorSpec, ChildSpec, Holder, Resource, TaskSpec

__all__ = ["NotificationTree", "notification_tree"]


@dataclass(slots=True)
class NotificationTree:
    resources: list[ChildSpec] = field(default_factory=list)
    actors: list[ChildSpec] = field(default_factory=list)
    handlers: dict[str, ActorRef[RunJob, Any]] = field(default_factory=dict)


def notification_tree(
    settings: Settings,
    database: Holder[Database],
    alerts: DeadLetterAlerts,
    *,
    clock: Clock | None = None,
) -> NotificationTree:
    clock = clock or SystemClock()
    tree = NotificationTree()
    runtime = settings.runtime
    concurrency = settings.notifications.concurrency
    cleanup_s = settings.cleanup_timeout_s

    def sender(
        name: str,
        provider: Callable[[], EmailProvider | SmsProvider],
        *,
        timeout_s: float,
        attempts: int = 1,
        backoff_s: float = 0.0,
    ) -> tuple[str, Sender]:
        spec = sender_spec(
            f"{name}-sender",
            provider,
            runtime,
            timeout_s=timeout_s,
            retry=provider_retry(attempts, backoff_s),
            concurrency=concurrency,
            clock=clock,
            margin_s=settings.notifications.sender_margin_s,
        )
        tree.actors.append(spec)
        return name, spec.ref

    def resource[T](name: str, opener: Callable[[], Any], holder: Holder[T]) -> None:
        tree.resources.append(
            TaskSpec(name, lambda: Resource(opener, holder), shutdown_s=cleanup_s)
        )

    email: list[tuple[str, Sender]] = []
    sms: list[tuple[str, Sender]] = []
    if settings.ses.enabled:
        ses: Holder[EmailProvider] = Holder("ses")
        resource("ses", lambda: open_ses(settings.ses, sender=settings.email.sender), ses)
        email.append(
            sender(
                "ses",
                lambda: ses.value,
                timeout_s=settings.ses.timeout_s,
                attempts=settings.ses.attempts,
                backoff_s=settings.ses.backoff_s,
            )
        )
    if settings.smtp.enabled:
        email.append(
            sender(
                "smtp",
                lambda: SmtpEmail(settings.smtp, sender=settings.email.sender),
                timeout_s=settings.smtp.timeout_s,
            )
        )
    if settings.twilio.enabled:
        twilio: Holder[SmsProvider] = Holder("twilio")
        resource("twilio", lambda: open_twilio(settings.twilio), twilio)
        sms.append(
            sender("twilio", lambda: twilio.value, timeout_s=settings.twilio.timeout_s, attempts=2)
        )
    if settings.msg91.enabled:
        msg91: Holder[SmsProvider] = Holder("msg91")
        resource("msg91", lambda: open_msg91(settings.msg91), msg91)
        sms.append(sender("msg91", lambda: msg91.value, timeout_s=settings.msg91.timeout_s))
    if not sms and settings.environment is not Environment.PRODUCTION:
        sms.append(sender("log", LogSms, timeout_s=settings.notifications.sender_margin_s))

    mailbox = notifier_mailbox(settings)
    message_timeout_s = mailbox.message_timeout_s or 0.0  # always set by notifier_mailbox
    providers = Providers(email=email, sms=sms)
    notifier: ActorSpec[RunJob, str] = ActorSpec(
        "notifier",
        lambda: Notifier(
            PostgresNotificationStore(database.value),
            providers,
            settings.notifications,
            settings.email,
            alerts,
            token_key=token_key(settings.booking.token_secret),
            clock=clock,
            # A retry run starts no email it may not finish inside its deadline.
            retry_budget_s=message_timeout_s
            - email_send_s(settings)
            - 2 * settings.database.slow_call_s,
            outage_retry_s=settings.unavailable_retry_after_s,
        ),
        mailbox=mailbox,
        shutdown_s=runtime.child_shutdown_s,
    )
    tree.actors.append(notifier)
    tree.handlers = dict.fromkeys(notification_kinds(), notifier.ref)
    return tree
