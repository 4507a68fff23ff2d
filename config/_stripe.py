"""Stripe: keys, where its API is, and how long a call may take."""

from __future__ import annotations

from dataclasses import dataclass, field

from config._check import check as _check

__all__ = ["StripeSettings"]


@dataclass(frozen=True, slots=True)
class StripeSettings:
    """The PaymentActor's Stripe (adapters/_stripe.py). Secrets are never logged (not
    in this object's repr either)."""

    secret_key: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    # Stripe's API; tests and ``make run`` point it at a local Stripe (localstripe).
    api_base: str = "https://api.stripe.com"
    # One call's deadline: the spec's breaker call timeout.
    timeout_s: float = 5.0
    # Stripe's own retries of a failed request, with the same Idempotency-Key (the
    # SDK's; nothing of ours retries a POST on top of them).
    network_retries: int = 2
    # The nightly reconciliation asks Stripe about orders still PENDING_PAYMENT this
    # long after they were placed (a webhook may have been missed).
    reconcile_after_s: float = 3600.0
    # While Stripe cannot answer, the reconciliation is handed back for this long
    # (not counted as a failed attempt).
    reconcile_retry_s: float = 60.0
    # A webhook whose signed timestamp is older than this is refused (replays).
    webhook_tolerance_s: float = 300.0
    # Bulkhead: Stripe calls in flight at once (the rest wait in the PaymentActor's
    # bounded mailbox; full: 503 overloaded).
    concurrency: int = 32
    # Stripe down, slow or its breaker open: the answer is 503 payment_unavailable with
    # this Retry-After (the spec's 60 s).
    unavailable_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        _check(
            self.api_base.startswith(("https://", "http://")),
            f"api_base: expected an http(s):// URL, got {self.api_base!r}",
        )
        _check(self.timeout_s > 0, "timeout_s: must be > 0")
        _check(self.unavailable_retry_after_s > 0, "unavailable_retry_after_s: must be > 0")
        _check(self.concurrency >= 1, "concurrency: must be >= 1")
        _check(self.webhook_tolerance_s > 0, "webhook_tolerance_s: must be > 0")
        _check(self.reconcile_after_s > 0, "reconcile_after_s: must be > 0")
        _check(self.reconcile_retry_s > 0, "reconcile_retry_s: must be > 0")
        _check(0 <= self.network_retries <= 5, "network_retries: must be between 0 and 5")
