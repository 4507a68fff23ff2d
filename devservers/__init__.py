"""Development servers for ``make run``: an embedded PostgreSQL and Redis, started
when no ``LOMASH_DATABASE_URL`` / ``LOMASH_REDIS_URL`` is set, and a local Stripe
(localstripe) for the tests and ``make run``, and a mail catcher for ``make run``
when no email provider is configured. Never on the service's path when those
are configured (production)."""

from devservers._catcher import CaughtMail, caught, mail_catcher
from devservers._embedded import EmbeddedError, embedded_postgres, embedded_redis, free_port
from devservers._local_stripe import local_stripe, register_webhook

__all__ = [
    "CaughtMail",
    "EmbeddedError",
    "caught",
    "embedded_postgres",
    "embedded_redis",
    "free_port",
    "local_stripe",
    "mail_catcher",
    "register_webhook",
]
