"""The PaymentActor against a local Stripe (localstripe on loopback), through the
fault proxy for outages: intents, the breaker opening on a cut and a slow Stripe,
and every caller then answered at once with 503-style ``PaymentUnavailable``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from actors import CreateIntent, PaymentMessage, RetrieveIntent, pay, payment_spec
from adapters import PaymentIntent, open_stripe
from chaos import Proxy, open_proxy
from config import RUNTIME_DEFAULTS, StripeSettings
from supervisors import (
    ActorRef,
    BreakerStatistics,
    DependencyError,
    PaymentUnavailable,
    SupervisorSpec,
    open_supervisor,
)
from tests.conftest import port_of

BOUND_S = 30.0
RETRY_AFTER_S = 60.0
TIMEOUT_S = 0.5  # a call's deadline here (5 s in production)


@asynccontextmanager
async def payments(
    stripe_url: str, *, network_retries: int = 0
) -> AsyncIterator[tuple[ActorRef[PaymentMessage, PaymentIntent], Proxy]]:
    """The PaymentActor with the spec's breaker on a Stripe behind a fault proxy."""
    async with open_proxy(port_of(stripe_url)) as proxy:
        settings = StripeSettings(
            secret_key="sk_test_lomash",
            api_base=f"http://127.0.0.1:{proxy.port}",
            timeout_s=TIMEOUT_S,
            network_retries=network_retries,
        )
        async with open_stripe(settings) as stripe:
            spec = payment_spec(lambda: stripe, RUNTIME_DEFAULTS, settings)
            async with open_supervisor(SupervisorSpec("test", [spec])):
                yield spec.ref, proxy


def intent_for(order: str) -> CreateIntent:
    return CreateIntent(
        order_id=order, amount_pence=1_250_000, currency="GBP", idempotency_key=f"order-{order}"
    )


async def test_an_intent_is_created_for_the_order_and_read_back(stripe_url: str) -> None:
    """Amount in pence, GBP, a client secret for the browser; retrieve gives it back."""
    async with payments(stripe_url) as (ref, _):
        with trio.fail_after(BOUND_S):
            created = await pay(ref, intent_for("o-1"), retry_after_s=RETRY_AFTER_S)
            again = await pay(ref, RetrieveIntent(created.id), retry_after_s=RETRY_AFTER_S)
    assert created.id.startswith("pi_")
    assert created.client_secret.startswith(f"{created.id}_secret_")
    assert (created.amount, created.currency) == (1_250_000, "gbp")
    assert created.status == "requires_payment_method"
    assert again == created


async def test_an_unknown_intent_is_our_bug_not_an_outage(stripe_url: str) -> None:
    """Stripe's 404 is a DependencyError (never shown as 'try later')."""
    async with payments(stripe_url) as (ref, _):
        with trio.fail_after(BOUND_S), pytest.raises(DependencyError, match="404"):
            await pay(ref, RetrieveIntent("pi_does_not_exist"), retry_after_s=RETRY_AFTER_S)


@pytest.mark.parametrize("fault", ["cut", "slow"])
async def test_stripe_down_or_slow_opens_the_breaker_and_then_nobody_waits(
    stripe_url: str, fault: str
) -> None:
    """Refused connections, or answers later than the call's deadline: the calls are
    PaymentUnavailable (Retry-After 60) after trying; at the spec's numbers (one
    success, then the 4th failure: 5 calls, 80 % failed) the breaker opens, and the
    next call is refused at once, without a connection or a byte to Stripe."""
    async with payments(stripe_url) as (ref, proxy):
        with trio.fail_after(BOUND_S):
            await pay(ref, intent_for("warm"), retry_after_s=RETRY_AFTER_S)
            if fault == "cut":
                proxy.reset()
            else:
                proxy.slow(TIMEOUT_S * 2)
            tried = []
            for n in range(4):
                with pytest.raises(PaymentUnavailable) as unavailable:
                    await pay(ref, intent_for(f"o-{n}"), retry_after_s=RETRY_AFTER_S)
                tried.append(unavailable.value)
                if n < 3:
                    assert _breaker(ref).state == "closed"
            opened = _breaker(ref)
            # What the client has sent (a slowed chunk is counted as it is sent, not
            # when the proxy delivers it, later).
            connections, sent = proxy.accepted, proxy.bytes_offered
            with pytest.raises(PaymentUnavailable) as refused:
                await pay(ref, intent_for("while-open"), retry_after_s=RETRY_AFTER_S)
            after = _breaker(ref)
    assert all(e.retry_after == RETRY_AFTER_S for e in [*tried, refused.value])
    assert (opened.state, opened.window_calls, opened.opened) == ("open", 0, 1)
    assert after.rejected == 1
    assert (proxy.accepted, proxy.bytes_offered) == (connections, sent)  # Stripe never asked


def _breaker(ref: ActorRef[PaymentMessage, PaymentIntent]) -> BreakerStatistics:
    stats = ref.statistics().breaker
    assert stats is not None
    return stats
