"""One sender actor per provider (ses, smtp, twilio, msg91): its mailbox is the
provider's policy, so each has its own breaker and its own retries.

- ``ses``: the spec's 3 attempts, backing off 0.2 s then 0.4 s, on throttling (429),
  5xx, connection errors and timeouts; then the notifier falls back to SMTP.
- ``smtp``: one attempt (the fallback; after it an email is dead-lettered and retried
  every 15 minutes).
- ``twilio``: the spec's "retry once immediately" (429, 5xx, connection errors,
  timeouts); then MSG91, one attempt.

A dead provider trips its breaker after a few calls (> 50 % of at least 5 in 60 s);
while it is open the notifier's ask fails at once (``ServiceUnavailable``) and the
next provider is used, instead of every message paying the timeouts. A refused
recipient is the provider's answer: it neither trips the breaker nor is retried.

Every attempt the policy makes, and how it failed, is noted on the message's
``trail``, so the notifier can log one row per attempt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from adapters import AttemptNote, Email, EmailProvider, Sms, SmsProvider
from config import MailboxSettings, RetrySettings, RuntimeSettings
from jobs import Clock
from supervisors import ActorRef, ActorSpec, Idempotent, LomashError

__all__ = ["Deliver", "Sender", "SenderActor", "provider_retry", "sender_spec"]

# The statuses a sender retries: the runtime's (429/502/503/504) and a plain 500,
# which Twilio and SES answer in an incident.
_SEND_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Deliver(Idempotent):
    """Hand ``item`` to the provider; its message id. Retried by the mailbox policy
    (a provider that refused nothing may be asked again)."""

    item: Email | Sms
    trail: list[AttemptNote] = field(default_factory=list, compare=False)


type Sender = ActorRef[Deliver, str]


class SenderActor:
    def __init__(self, provider: EmailProvider | SmsProvider, clock: Clock) -> None:
        self._provider = provider
        self._clock = clock

    async def handle(self, message: Deliver) -> str:
        try:
            return await self._provider.send(message.item)  # type: ignore[arg-type]
        except LomashError as error:
            self._note(message, type(error).__name__, error.message)
            raise
        except trio.Cancelled:  # the attempt's deadline (or a shutdown)
            self._note(message, "MessageTimeout", "no answer within the attempt's deadline")
            raise

    def _note(self, message: Deliver, error_type: str, error: str) -> None:
        message.trail.append(AttemptNote(self._provider.name, self._clock.now(), error_type, error))


def provider_retry(attempts: int, backoff_s: float) -> RetrySettings | None:
    """``attempts`` in all, backing off ``backoff_s``, doubled after each; None for one."""
    if attempts <= 1:
        return None
    return RetrySettings(
        max_retries=attempts - 1,
        base_delay_s=backoff_s,
        factor=2.0,
        jitter_s=0.0,
        retry_statuses=_SEND_RETRY_STATUSES,
    )


def sender_spec(
    name: str,
    provider: Callable[[], EmailProvider | SmsProvider],
    runtime: RuntimeSettings,
    *,
    timeout_s: float,
    retry: RetrySettings | None,
    concurrency: int,
    clock: Clock,
    margin_s: float = 0.5,
) -> ActorSpec[Deliver, str]:
    """A provider's sender: its breaker, its retries, an attempt's deadline ``margin_s``
    above the adapter's own (so the adapter's timeout, the more precise error, fires
    first), and an ask deadline above every attempt and backoff."""
    attempt_s = timeout_s + margin_s
    tries = 1 + (retry.max_retries if retry is not None else 0)
    backoff_s = sum(retry.delays()) if retry is not None else 0.0
    mailbox: MailboxSettings = dataclasses.replace(
        runtime.mailbox,
        concurrency=concurrency,
        message_timeout_s=attempt_s,
        ask_timeout_s=tries * attempt_s + backoff_s + margin_s,
    )
    return ActorSpec(
        name,
        lambda: SenderActor(provider(), clock),
        mailbox=mailbox,
        breaker=runtime.breaker,
        retry=retry,
        shutdown_s=runtime.child_shutdown_s,
    )
