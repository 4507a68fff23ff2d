"""Development servers for ``make run``: an embedded PostgreSQL and Redis, started
when no ``LOMASH_DATABASE_URL`` / ``LOMASH_REDIS_URL`` is set. Never on the service's
path when those are configured (production)."""

from devservers._embedded import EmbeddedError, embedded_postgres, embedded_redis, free_port

__all__ = ["EmbeddedError", "embedded_postgres", "embedded_redis", "free_port"]
