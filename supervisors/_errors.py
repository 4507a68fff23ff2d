"""The project's one error tree.

Every error the service raises on purpose is a ``LomashError``. Vendor exceptions
(asyncpg, redis, stripe, httpx, smtplib) are translated into this tree at the
adapter boundary; the gateway maps it to HTTP in one table.

    LomashError
    ├── DomainError                   the caller's fault or a business rule; never trips
    │   │                             a breaker, never retried
    │   ├── InvalidRequest            the request is malformed (400) or a field is wrong (422)
    │   │   └── UnsupportedMediaType  not JSON, or not UTF-8 (415)
    │   ├── InvalidData               the database refused a value (check / not-null / type)
    │   ├── NotFound                  no such resource (404)
    │   ├── Unauthorized              missing or wrong credentials (401)
    │   ├── TooManyRequests           a rate limit refused the request (429 + Retry-After)
    │   ├── Conflict                  the write collides with existing state (409)
    │   ├── MethodNotAllowed          the path exists, the method does not (405)
    │   ├── PayloadTooLarge           the body is over the limit (413)
    │   └── RequestTimeout            the body did not arrive in time (408)
    ├── DependencyError               something we depend on failed
    │   ├── UpstreamError             a provider answered with an error status
    │   ├── ConnectionLost            reset / refused / dropped (ECONNRESET); also "down or
    │   │                             slow, probing again in retry_after s" from a gate
    │   ├── Contention                serialization failure / deadlock: safe to retry
    │   ├── DatabaseError             any other database failure (a bug until shown otherwise)
    │   └── OperationTimeout          no answer within the deadline (ETIMEDOUT)
    │       ├── MessageTimeout        an actor's handler ran past its per-message timeout
    │       └── AskTimeout            an ask got no reply within its deadline
    ├── Unavailable                   refused now, retry later (HTTP 503 + Retry-After)
    │   ├── ServiceUnavailable        circuit open: the breaker's fallback
    │   ├── MailboxFull               the actor's mailbox is at capacity
    │   ├── ActorUnavailable          the actor is stopped, unknown, or was stopped mid-message
    │   ├── ResourceUnavailable       a supervised resource (pool, client) is not open
    │   ├── PaymentUnavailable        Stripe down, slow or its breaker open (no charge made)
    │   └── DeadlineExceeded          a request ran out of its overall budget (cancelled)
    ├── RetryLater                    a job handler's "not now" (jobs/_queue.py): handed back
    │                                 uncounted while its dependency is down
    ├── LeaseLost                     a worker's lease on a job is gone (jobs/_queue.py)
    ├── MigrationError                the migrations or their history forbid the run
    │                                 (adapters/_migration_files.py)
    ├── EmbeddedError                 a development server could not start (devservers/)
    ├── Misuse                        our own code called something wrongly: a bug (500)
    ├── ActorCrashed                  the handler hit a bug; the actor is being restarted
    ├── ProcessExited                 a supervised process (a worker) died; it is restarted
    └── SupervisionError
        ├── ChildStartFailed          a child failed before reporting ready
        └── RestartIntensityExceeded  too many restarts: the supervisor gives up, escalates

``ConfigError`` (config/) stands outside the tree on purpose: ``config`` imports nothing
of ours (everything imports it), and a configuration error never reaches a request;
the command line reports it as one line and exits 2.

Errors carry structured fields (``actor``, ``retry_after``, ``status`` ...) so logs,
metrics and the HTTP mapping never parse messages.
"""

from __future__ import annotations

__all__ = [
    "ActorCrashed",
    "ActorUnavailable",
    "AskTimeout",
    "ChildStartFailed",
    "Conflict",
    "ConnectionLost",
    "Contention",
    "DatabaseError",
    "DependencyError",
    "DomainError",
    "InvalidData",
    "InvalidRequest",
    "LomashError",
    "MailboxFull",
    "MessageTimeout",
    "MethodNotAllowed",
    "Misuse",
    "NotFound",
    "OperationTimeout",
    "PayloadTooLarge",
    "ProcessExited",
    "RequestTimeout",
    "ResourceUnavailable",
    "RestartIntensityExceeded",
    "ServiceUnavailable",
    "SupervisionError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "UpstreamError",
    "is_outage",
]


def is_outage(error: BaseException) -> bool:
    """A dependency cannot be reached now (down, slow, refusing): worth waiting out.
    Anything else is an answer or a bug, and must not be taken for an outage."""
    return isinstance(error, ConnectionLost | OperationTimeout | Unavailable)


class LomashError(Exception):
    """Root of every error the service raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DomainError(LomashError):
    """The request is wrong or breaks a business rule; retrying will not help."""


class InvalidRequest(DomainError):
    """The request cannot be accepted as sent.

    ``malformed`` requests (not JSON, wrong content type) are 400s; a request with a
    wrong or missing ``field`` is a 422. ``code`` is the stable machine-readable code.
    """

    def __init__(
        self, message: str, *, code: str, field: str | None = None, malformed: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.malformed = malformed


class UnsupportedMediaType(InvalidRequest):
    """The body is not in a media type (or charset) the route accepts (415)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unsupported_media_type", malformed=True)


class InvalidData(DomainError):
    """The database refused a value (a check, not-null or type constraint)."""

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class NotFound(DomainError):
    """No such resource (or the caller may not know whether it exists)."""


class Unauthorized(DomainError):
    """Missing or wrong credentials; ``code`` says which (``invalid_token``, ...)."""

    def __init__(self, message: str, *, code: str = "unauthorized") -> None:
        super().__init__(message)
        self.code = code


class TooManyRequests(DomainError):
    """A rate limit refused the request: retry after ``retry_after`` s; ``headers``
    are the limit's ``RateLimit-*`` headers."""

    def __init__(self, message: str, *, retry_after: float, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = headers


class Conflict(DomainError):
    """The write collides with existing state; ``code`` says how (e.g. slot_taken)."""

    def __init__(self, message: str, *, code: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.constraint = constraint


class MethodNotAllowed(DomainError):
    """The path exists, the method does not (405, with the methods it has)."""

    def __init__(self, method: str, *, allowed: tuple[str, ...]) -> None:
        super().__init__(f"{method} is not allowed here; use {', '.join(allowed)}")
        self.allowed = allowed


class PayloadTooLarge(DomainError):
    """The request body is larger than the service accepts."""

    def __init__(self, *, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit


class RequestTimeout(DomainError):
    """The request body did not arrive within the body deadline (408)."""

    def __init__(self, *, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:g} s")
        self.timeout_s = timeout_s


class DependencyError(LomashError):
    """A dependency (database, cache, provider) failed to do what we asked."""

    def __init__(self, message: str, *, dependency: str) -> None:
        super().__init__(message)
        self.dependency = dependency


class UpstreamError(DependencyError):
    """A provider answered with an error status (retryable when 429/502/503/504)."""

    def __init__(self, message: str, *, dependency: str, status: int) -> None:
        super().__init__(message, dependency=dependency)
        self.status = status


class ConnectionLost(DependencyError):
    """The connection was refused, reset or dropped, or the dependency is known down.

    ``retry_after`` is set when a reconnect gate refused the call without trying:
    the next probe of the dependency is due in that many seconds.
    """

    def __init__(self, message: str, *, dependency: str, retry_after: float | None = None) -> None:
        super().__init__(message, dependency=dependency)
        self.retry_after = retry_after


class Contention(DependencyError):
    """A serialization failure or deadlock: the work was rolled back, retrying is safe."""


class DatabaseError(DependencyError):
    """A database error that is neither an outage nor bad data (``sqlstate`` says what)."""

    def __init__(self, message: str, *, sqlstate: str | None) -> None:
        super().__init__(message, dependency="postgres")
        self.sqlstate = sqlstate


class OperationTimeout(DependencyError):
    """No answer came within the deadline."""

    def __init__(self, message: str, *, dependency: str, timeout_s: float) -> None:
        super().__init__(message, dependency=dependency)
        self.timeout_s = timeout_s


class MessageTimeout(OperationTimeout):
    """An actor's handler ran past its per-message timeout and was cancelled."""

    def __init__(self, actor: str, timeout_s: float) -> None:
        super().__init__(
            f"actor {actor!r} did not finish within {timeout_s} s",
            dependency=actor,
            timeout_s=timeout_s,
        )
        self.actor = actor


class AskTimeout(OperationTimeout):
    """An ask got no reply within its deadline."""

    def __init__(self, actor: str, timeout_s: float) -> None:
        super().__init__(
            f"no reply from actor {actor!r} within {timeout_s} s",
            dependency=actor,
            timeout_s=timeout_s,
        )
        self.actor = actor


class Unavailable(LomashError):
    """We refuse the work now; the caller may retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(Unavailable):
    """The circuit is open: calls fail at once instead of waiting for timeouts."""

    def __init__(self, actor: str, *, retry_after: float) -> None:
        super().__init__(
            f"{actor} is temporarily unavailable (circuit open)", retry_after=retry_after
        )
        self.actor = actor


class MailboxFull(Unavailable):
    """The actor's mailbox is at capacity (and stayed so for the allowed wait)."""

    def __init__(self, actor: str, *, capacity: int, retry_after: float) -> None:
        super().__init__(f"actor {actor!r} is overloaded", retry_after=retry_after)
        self.actor = actor
        self.capacity = capacity


class ActorUnavailable(Unavailable):
    """The actor does not take messages: stopped, unknown, or stopped mid-message."""

    def __init__(self, actor: str, *, reason: str) -> None:
        super().__init__(f"actor {actor!r} is unavailable: {reason}", retry_after=None)
        self.actor = actor
        self.reason = reason


class ResourceUnavailable(Unavailable):
    """A supervised resource (a pool, a client) is not open: starting, restarting or
    stopped."""

    def __init__(self, resource: str) -> None:
        super().__init__(f"resource {resource!r} is not open", retry_after=None)
        self.resource = resource


class PaymentUnavailable(Unavailable):
    """The payment provider is down, slow or its breaker open: no charge was attempted
    now; the same request may be retried (with its Idempotency-Key) later."""

    def __init__(self, *, retry_after: float) -> None:
        super().__init__("payment temporarily unavailable", retry_after=retry_after)


class DeadlineExceeded(Unavailable):
    """A request ran out of its overall budget; its work was cancelled."""

    def __init__(self, *, timeout_s: float, retry_after: float) -> None:
        super().__init__(
            f"the request did not finish within its {timeout_s:g} s budget",
            retry_after=retry_after,
        )
        self.timeout_s = timeout_s


class Misuse(LomashError):
    """Our own code called something the wrong way (a bug, not a client's fault)."""


class ActorCrashed(LomashError):
    """The handler raised an unexpected error; the actor is restarted by its supervisor."""

    def __init__(self, actor: str, *, error_type: str) -> None:
        super().__init__(f"actor {actor!r} crashed ({error_type})")
        self.actor = actor
        self.error_type = error_type


class SupervisionError(LomashError):
    """A supervisor could not keep its children running."""

    def __init__(self, message: str, *, supervisor: str, child: str) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child = child


class ChildStartFailed(SupervisionError):
    """A child failed before it reported ready."""


class ProcessExited(LomashError):
    """A supervised OS process (a worker) exited on its own with a failure status."""

    def __init__(self, name: str, status: int) -> None:
        super().__init__(f"{name} exited with status {status}")
        self.name = name
        self.status = status


class RestartIntensityExceeded(SupervisionError):
    """More than ``max_restarts`` restarts within ``within_s``: the supervisor escalates."""

    def __init__(self, *, supervisor: str, child: str, max_restarts: int, within_s: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restarts "
            f"within {within_s} s (last crash: {child!r})",
            supervisor=supervisor,
            child=child,
        )
        self.max_restarts = max_restarts
        self.within_s = within_s
