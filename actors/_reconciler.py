"""The nightly reconciliation (``payments.reconcile``, 02:00 Europe/London).

Orders still PENDING_PAYMENT ``stripe.reconcile_after_s`` (1 h) after they were
placed may have missed their webhook: each one's PaymentIntent is read from Stripe
and its outcome goes through the OrderActor exactly as a webhook's would (an event of
its own, ``reconcile:{intent}:{status}``, processed once; the same transitions, so
nothing moves backwards). Stripe unable to answer (down, slow, its breaker open):
the job is handed back for ``stripe.reconcile_retry_s`` without counting an attempt,
however long the outage (the breaker stays open 30 s, longer than the queue's whole
1/2/4/8 s backoff: counted attempts would dead-letter the night's job), and nothing is
marked failed because Stripe was down; what was repaired before stays repaired.
"""

from __future__ import annotations

import structlog

from actors._orders import OrderMessage, OrderReply, PaymentEvent
from actors._payments import PaymentMessage, RetrieveIntent, pay
from adapters import OrderStore, PaymentIntent
from config import StripeSettings
from jobs import RetryLater, RunJob
from supervisors import ActorRef, PaymentUnavailable

__all__ = ["RECONCILE_KIND", "Reconciler", "intent_event"]

RECONCILE_KIND = "payments.reconcile"

log = structlog.get_logger("actors.reconciler")


def intent_event(intent: PaymentIntent) -> str | None:
    """The webhook event type a PaymentIntent's state stands for, if any."""
    if intent.status == "succeeded":
        return "payment_intent.succeeded"
    if intent.status == "requires_payment_method" and intent.failed:
        return "payment_intent.payment_failed"
    return None


class Reconciler:
    def __init__(
        self,
        store: OrderStore,
        payments: ActorRef[PaymentMessage, PaymentIntent],
        orders: ActorRef[OrderMessage, OrderReply],
        stripe: StripeSettings,
    ) -> None:
        self._store = store
        self._payments = payments
        self._orders = orders
        self._stripe = stripe

    async def handle(self, message: RunJob) -> int:
        """Repair what Stripe knows and we do not; the number of orders looked at."""
        pending = await self._store.pending_payments(self._stripe.reconcile_after_s)
        for order_id, intent_id in pending:
            try:
                intent = await pay(
                    self._payments,
                    RetrieveIntent(intent_id),
                    retry_after_s=self._stripe.unavailable_retry_after_s,
                )
            except PaymentUnavailable as down:
                raise RetryLater(down.message, after_s=self._stripe.reconcile_retry_s) from None
            event_type = intent_event(intent)
            log.info("order_reconciled", order_id=order_id, stripe_status=intent.status)
            if event_type is not None:
                event = PaymentEvent(
                    f"reconcile:{intent_id}:{intent.status}", event_type, intent_id
                )
                await self._orders.ask(event)
        return len(pending)
