"""Stripe through the official SDK's async client, which runs on trio (httpx/anyio).

The one place Stripe's exceptions are translated into the project's tree:

- no connection, a reset, a timeout of the HTTP client -> ``ConnectionLost`` /
  ``OperationTimeout`` (an outage: the PaymentActor's breaker counts it);
- 429 and 5xx -> ``UpstreamError(status)`` (an outage too);
- a declined card -> ``PaymentDeclined`` (the customer's answer, not an outage);
- anything else Stripe refuses (bad key, bad parameters) -> ``DependencyError``: our
  bug or our configuration, never shown to the customer as such.

Every POST carries an ``Idempotency-Key`` chosen by the caller (derived from the
order), so Stripe's own retries and ours after a timeout create one PaymentIntent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import stripe

from config import StripeSettings
from supervisors import (
    ConnectionLost,
    DependencyError,
    DomainError,
    LomashError,
    OperationTimeout,
    UpstreamError,
)

__all__ = ["PaymentDeclined", "PaymentIntent", "Payments", "StripePayments", "open_stripe"]

DEPENDENCY = "stripe"


class PaymentDeclined(DomainError):
    """Stripe refused the payment itself (a declined card): the customer's to fix."""

    def __init__(self, message: str, *, decline_code: str | None) -> None:
        super().__init__(message)
        self.code = "payment_declined"
        self.decline_code = decline_code


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    client_secret: str
    status: str
    amount: int
    currency: str
    # The last attempt to pay failed (a declined card): Stripe's last_payment_error.
    failed: bool = False


class Payments(Protocol):
    async def create_intent(
        self, *, amount_pence: int, currency: str, order_id: str, idempotency_key: str
    ) -> PaymentIntent:
        """A PaymentIntent for ``amount_pence``; the same key gives the same intent."""
        ...

    async def retrieve_intent(self, intent_id: str) -> PaymentIntent: ...


def translate(error: Exception, *, timeout_s: float) -> LomashError:
    """The project's error for a Stripe SDK error (the one translation point)."""
    if isinstance(error, stripe.APIConnectionError):
        cause = error.__cause__
        if isinstance(cause, httpx.TimeoutException):
            return OperationTimeout("stripe timeout", dependency=DEPENDENCY, timeout_s=timeout_s)
        return ConnectionLost("stripe unreachable", dependency=DEPENDENCY)
    if isinstance(error, stripe.CardError):
        return PaymentDeclined(
            error.user_message or "the card was declined",
            decline_code=getattr(error.error, "decline_code", None) if error.error else None,
        )
    status = getattr(error, "http_status", None)
    if isinstance(error, stripe.RateLimitError) or (status is not None and status >= 500):
        return UpstreamError(
            f"stripe answered {status}", dependency=DEPENDENCY, status=status or 429
        )
    return DependencyError(f"stripe refused the request ({status}): {error}", dependency=DEPENDENCY)


def _intent(raw: Any) -> PaymentIntent:
    return PaymentIntent(
        id=raw.id,
        client_secret=raw.client_secret,
        status=raw.status,
        amount=raw.amount,
        currency=raw.currency,
        failed=getattr(raw, "last_payment_error", None) is not None,
    )


class StripePayments:
    def __init__(self, client: stripe.StripeClient, *, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def create_intent(
        self, *, amount_pence: int, currency: str, order_id: str, idempotency_key: str
    ) -> PaymentIntent:
        try:
            raw = await self._client.v1.payment_intents.create_async(
                {
                    "amount": amount_pence,
                    "currency": currency.lower(),
                    "metadata": {"order_id": order_id},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as error:
            raise translate(error, timeout_s=self._timeout_s) from error
        return _intent(raw)

    async def retrieve_intent(self, intent_id: str) -> PaymentIntent:
        try:
            raw = await self._client.v1.payment_intents.retrieve_async(intent_id)
        except stripe.StripeError as error:
            raise translate(error, timeout_s=self._timeout_s) from error
        return _intent(raw)


@asynccontextmanager
async def open_stripe(settings: StripeSettings) -> AsyncIterator[StripePayments]:
    """A client for ``settings.api_base`` (its HTTP client closed on exit)."""
    if settings.secret_key is None:
        raise DependencyError("LOMASH_STRIPE_SECRET_KEY is not set", dependency=DEPENDENCY)
    http = stripe.HTTPXClient(timeout=settings.timeout_s)
    client = stripe.StripeClient(
        settings.secret_key,
        http_client=http,
        base_addresses={"api": settings.api_base},
        max_network_retries=settings.network_retries,
    )
    try:
        yield StripePayments(client, timeout_s=settings.timeout_s)
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]
