"""The HTTP edge: keep-alive, connection cap, body and send deadlines, protocols."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["HttpDriver", "HttpSettings"]


class HttpDriver(StrEnum):
    """What drives HTTP/1.1 connections (both with the same limits and drain)."""

    # hypercorn's protocol classes under our accept loop and connection driver.
    HYPERCORN = "hypercorn"
    # h11 in one task per connection, nothing spawned per request (gateway._lean_http).
    LEAN = "lean"


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Limits that keep one hostile or careless client from holding the service.

    Behind an ALB, set the target group's idle timeout below ``keep_alive_s`` (or raise
    ``keep_alive_s`` above it): the side that closes an idle connection first must be
    the load balancer, else it may reuse a connection the service has just closed.
    """

    # An idle keep-alive connection (and one whose request headers have not all
    # arrived) is closed after this long.
    keep_alive_s: float = 5.0
    # Open connections per process; beyond it the oldest idle one is closed to make
    # room, and if none is idle the newcomer gets 503 + Retry-After and is closed.
    max_connections: int = 800
    # A request body must have arrived completely this long after the request began
    # (a trickled body is answered 408 and the connection closed).
    body_timeout_s: float = 30.0
    # Writing one chunk of a response may take this long; a client that does not
    # read is disconnected (its request task is not held).
    send_timeout_s: float = 10.0
    # Every request's handler must answer within this (the body's arrival not
    # counted); past it the work is cancelled and the answer is 503 ``timeout`` with
    # Retry-After. Below a typical client's 10 s and an ALB's 60 s idle timeout.
    request_timeout_s: float = 8.0
    # HTTP/2 over plain HTTP (h2c upgrade, prior knowledge). Off: an Upgrade: h2c or
    # a PRI preface is answered as HTTP/1.1 (or refused as malformed).
    h2c: bool = False
    # The connection driver: ``lean`` serves about 4x the trivial requests per core
    # (bench/driver.py) and speaks HTTP/1.1 only; ``hypercorn`` for h2c.
    driver: HttpDriver = HttpDriver.LEAN
    # Browser origins (``https://www.lomashwood.co.uk``) allowed to call the API
    # cross-origin; ``*`` for any. Empty: no CORS headers, preflights refused.
    cors_origins: frozenset[str] = frozenset()
    # How long a browser may keep a preflight's answer.
    cors_max_age_s: int = 600

    def __post_init__(self) -> None:
        for origin in self.cors_origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin (scheme://host[:port], no path)"
                )
        for name in ("keep_alive_s", "body_timeout_s", "send_timeout_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0")
        if self.h2c and self.driver is HttpDriver.LEAN:
            raise ValueError("h2c: needs driver=hypercorn (the lean driver is HTTP/1.1 only)")
        if self.max_connections < 1:
            raise ValueError("max_connections: must be >= 1")
