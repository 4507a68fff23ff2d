"""The PaymentActor: the one caller of Stripe, behind its own breaker.

Its mailbox applies the spec's breaker to Stripe (a call's deadline is
``stripe.timeout_s``, 5 s; > 50 % of at least 5 calls failing in 60 s opens it; a
trial after 30 s), so a Stripe outage costs at most a few timeouts and then every
caller is answered at once. ``CreateIntent`` (a POST) is never retried by the
mailbox: the Stripe SDK's own retries carry the same Idempotency-Key, nothing else
does. ``RetrieveIntent`` is idempotent and retried on transient failures.

``pay`` is how callers ask: whatever keeps Stripe from answering now (down, slow,
5xx or 429, the breaker open) is one ``PaymentUnavailable`` with the configured
Retry-After (60 s); a declined card stays ``PaymentDeclined``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from adapters import PaymentIntent, Payments
from config import RuntimeSettings, StripeSettings
from supervisors import (
    ActorRef,
    ActorSpec,
    Idempotent,
    LomashError,
    PaymentUnavailable,
    UpstreamError,
    is_outage,
)

__all__ = [
    "CreateIntent",
    "PaymentActor",
    "PaymentMessage",
    "RetrieveIntent",
    "pay",
    "payment_spec",
]


@dataclass(frozen=True, slots=True)
class CreateIntent:
    """A PaymentIntent for an order; ``idempotency_key`` (from the order) makes a
    repeat of this request the same intent at Stripe."""

    order_id: str
    amount_pence: int
    currency: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class RetrieveIntent(Idempotent):
    intent_id: str


type PaymentMessage = CreateIntent | RetrieveIntent


class PaymentActor:
    def __init__(self, payments: Payments) -> None:
        self._payments = payments

    async def handle(self, message: PaymentMessage) -> PaymentIntent:
        match message:
            case CreateIntent():
                return await self._payments.create_intent(
                    amount_pence=message.amount_pence,
                    currency=message.currency,
                    order_id=message.order_id,
                    idempotency_key=message.idempotency_key,
                )
            case RetrieveIntent():
                return await self._payments.retrieve_intent(message.intent_id)


def payment_spec(
    payments: Callable[[], Payments], runtime: RuntimeSettings, stripe: StripeSettings
) -> ActorSpec[PaymentMessage, PaymentIntent]:
    """The PaymentActor's child spec: the spec's breaker, a call's deadline as Stripe's."""
    return ActorSpec(
        "payments",
        lambda: PaymentActor(payments()),
        mailbox=dataclasses.replace(
            runtime.mailbox,
            concurrency=stripe.concurrency,
            message_timeout_s=stripe.timeout_s,
        ),
        breaker=runtime.breaker,
        retry=runtime.retry,
        shutdown_s=runtime.child_shutdown_s,
    )


async def pay(
    ref: ActorRef[PaymentMessage, PaymentIntent],
    message: PaymentMessage,
    *,
    retry_after_s: float,
) -> PaymentIntent:
    """Ask the PaymentActor; Stripe not answering now is ``PaymentUnavailable``."""
    try:
        return await ref.ask(message)
    except LomashError as error:
        if is_outage(error) or isinstance(error, UpstreamError):
            raise PaymentUnavailable(retry_after=retry_after_s) from error
        raise
