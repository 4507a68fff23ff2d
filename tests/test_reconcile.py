"""The nightly reconciliation (payments.reconcile): orders whose webhook never came
are repaired from Stripe's own record, through the same transitions; a Stripe outage
during it changes nothing, and the job is handed back (uncounted) until Stripe and
the PaymentActor's breaker let it through.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from actors import RECONCILE_KIND
from adapters import open_redis
from config import Settings
from jobs import JobState, RedisJobQueue
from tests._booking import announced, eventually
from tests.conftest import fetch
from tests.test_orders import ORDER, order, shop
from tests.test_webhooks import status_of


async def pay_on_stripe(stripe_url: str, placed: dict[str, Any], card: str) -> None:
    """As the browser would, with no webhook coming back to this service."""
    intent = f"/v1/payment_intents/{placed['payment']['payment_intent_id']}"
    async with httpx.AsyncClient(base_url=stripe_url, auth=("sk_test_lomash", "")) as stripe:
        await stripe.post(intent, data={"payment_method": card})
        await stripe.post(f"{intent}/confirm")


async def test_missed_webhooks_are_repaired_and_a_stripe_outage_is_waited_out(
    settings: Settings, stripe_url: str
) -> None:
    """Two orders paid / declined on Stripe an hour ago, their webhooks lost, and one
    placed just now: the reconcile job, run while Stripe is cut (long enough to open
    the PaymentActor's breaker), changes nothing and is handed back without a counted
    attempt; once Stripe is back it makes them PAID and PAYMENT_FAILED (with their
    notifications) and leaves the recent one alone."""
    jobs = dataclasses.replace(settings.jobs, queues="bookings,payments")
    breaker = dataclasses.replace(settings.runtime.breaker, reset_timeout_s=1.0)
    settings = dataclasses.replace(
        settings, jobs=jobs, runtime=dataclasses.replace(settings.runtime, breaker=breaker)
    )
    url = settings.database.url
    assert url is not None
    async with shop(settings, stripe_url) as (client, proxy, _):
        paid = (await order(client, ORDER, key="paid")).json()
        declined = (await order(client, ORDER, key="declined")).json()
        recent = (await order(client, ORDER, key="recent")).json()
        await pay_on_stripe(stripe_url, paid, "pm_card_visa")
        await pay_on_stripe(stripe_url, declined, "pm_card_chargeCustomerFail")
        await pay_on_stripe(stripe_url, recent, "pm_card_visa")
        await fetch(
            url,
            "UPDATE orders SET created_at = now() - interval '2 hours' "
            f"WHERE id IN ('{paid['id']}', '{declined['id']}')",
        )
        proxy.reset()
        async with open_redis(settings.redis, cleanup_s=1.0) as cache:
            queue = RedisJobQueue(cache, prefix="jobs")
            await queue.enqueue("payments", RECONCILE_KIND, {}, job_id="reconcile-now")

            async def handed_back_later() -> bool:
                return await queue.state("payments", "reconcile-now") is JobState.DELAYED

            await eventually(handed_back_later)
            during = [await status_of(client, o) for o in (paid, declined, recent)]
            handed_back = await queue.statistics("payments")
            proxy.forward()

            async def done() -> bool:
                return await queue.state("payments", "reconcile-now") is JobState.COMPLETED

            await eventually(done)
        after = [await status_of(client, o) for o in (paid, declined, recent)]
        notices = await announced(settings)
    assert during == ["PENDING_PAYMENT"] * 3
    assert handed_back.dead == 0
    assert after == ["PAID", "PAYMENT_FAILED", "PENDING_PAYMENT"]
    order_jobs = sorted((kind, p["order_id"]) for kind, p in notices if kind.startswith("order."))
    assert order_jobs == sorted(
        [("order.paid", paid["id"]), ("order.payment_failed", declined["id"])]
    )
