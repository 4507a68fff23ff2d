"""Orders and payments, when Stripe is configured (production requires it): the
``payments`` actor on the SDK's client, the ``orders`` actor, the
``payments-reconciler``, and the ``stripe`` resource they run on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from actors import OrderActor, Reconciler, payment_spec, token_key
from adapters import Database, Payments, PostgresOrderStore, open_stripe
from config import Settings, order_mailbox
from supervisors import ActorSpec, ChildSpec, Holder, Resource, TaskSpec

__all__ = ["CommerceActors", "commerce_actors"]


@dataclass(frozen=True, slots=True)
class CommerceActors:
    payments: ActorSpec[Any, Any]
    orders: ActorSpec[Any, Any]
    reconciler: ActorSpec[Any, Any]
    stripe: Holder[Payments]

    @property
    def specs(self) -> list[ChildSpec]:
        """The domain's children (after the resources, before the HTTP server)."""
        return [self.payments, self.orders, self.reconciler]

    def resource(self, settings: Settings, *, cleanup_s: float) -> TaskSpec:
        """The Stripe client, a resource beside Postgres and Redis."""
        return TaskSpec(
            "stripe",
            lambda: Resource(lambda: open_stripe(settings.stripe), self.stripe),
            shutdown_s=cleanup_s,
        )


def commerce_actors(settings: Settings, database: Holder[Database]) -> CommerceActors | None:
    """The commerce actors, or None without ``LOMASH_STRIPE_SECRET_KEY``."""
    if settings.stripe.secret_key is None:
        return None
    stripe: Holder[Payments] = Holder("stripe")
    payments = payment_spec(lambda: stripe.value, settings.runtime, settings.stripe)
    payments_ref = payments.ref
    orders = ActorSpec(
        "orders",
        lambda: OrderActor(
            PostgresOrderStore(database.value),
            payments_ref,
            settings.stripe,
            token_key=token_key(settings.booking.token_secret),
        ),
        mailbox=order_mailbox(settings),
        shutdown_s=settings.runtime.child_shutdown_s,
    )
    orders_ref = orders.ref
    reconciler = ActorSpec(
        "payments-reconciler",
        lambda: Reconciler(
            PostgresOrderStore(database.value), payments_ref, orders_ref, settings.stripe
        ),
        mailbox=dataclasses.replace(settings.runtime.mailbox, message_timeout_s=None),
        shutdown_s=settings.runtime.child_shutdown_s,
    )
    return CommerceActors(payments, orders, reconciler, stripe)
