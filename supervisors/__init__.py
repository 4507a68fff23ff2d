"""The actor runtime: actors with bounded mailboxes, supervision trees, policies.

An *actor* is a behaviour behind a stable address (``ActorRef``) and a bounded
mailbox; callers ``tell`` it or ``ask`` it (always under a deadline). A *supervisor*
starts its children in order, restarts them by strategy when they crash, and stops
them in reverse order, gracefully first. Circuit breakers, retries, timeouts and
bulkheads are *mailbox policies* of each actor.
"""

from supervisors._actor import Actor, ActorRef, ActorSpec, ActorStatistics
from supervisors._breaker import Breaker, BreakerState, BreakerStatistics, Permit
from supervisors._child import ChildSpec, Forever, Restart, Service, TaskSpec
from supervisors._errors import (
    ActorCrashed,
    ActorUnavailable,
    AskTimeout,
    ChildStartFailed,
    Conflict,
    ConnectionLost,
    Contention,
    DatabaseError,
    DeadlineExceeded,
    DependencyError,
    DomainError,
    InvalidData,
    InvalidRequest,
    LomashError,
    MailboxFull,
    MessageTimeout,
    MethodNotAllowed,
    Misuse,
    NotFound,
    OperationTimeout,
    PayloadTooLarge,
    PaymentUnavailable,
    ProcessExited,
    RequestTimeout,
    ResourceUnavailable,
    RestartIntensityExceeded,
    ServiceUnavailable,
    SupervisionError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    UpstreamError,
    is_outage,
)
from supervisors._mailbox import Idempotent
from supervisors._policies import Jitter, RetryPolicy
from supervisors._registry import Registry
from supervisors._resource import Holder, Resource
from supervisors._supervisor import Supervisor, open_supervisor
from supervisors._supervisor_spec import Strategy, SupervisorSpec, SupervisorStatistics

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorRef",
    "ActorSpec",
    "ActorStatistics",
    "ActorUnavailable",
    "AskTimeout",
    "Breaker",
    "BreakerState",
    "BreakerStatistics",
    "ChildSpec",
    "ChildStartFailed",
    "Conflict",
    "ConnectionLost",
    "Contention",
    "DatabaseError",
    "DeadlineExceeded",
    "DependencyError",
    "DomainError",
    "Forever",
    "Holder",
    "Idempotent",
    "InvalidData",
    "InvalidRequest",
    "Jitter",
    "LomashError",
    "MailboxFull",
    "MessageTimeout",
    "MethodNotAllowed",
    "Misuse",
    "NotFound",
    "OperationTimeout",
    "PayloadTooLarge",
    "PaymentUnavailable",
    "Permit",
    "ProcessExited",
    "Registry",
    "RequestTimeout",
    "Resource",
    "ResourceUnavailable",
    "Restart",
    "RestartIntensityExceeded",
    "RetryPolicy",
    "Service",
    "ServiceUnavailable",
    "Strategy",
    "SupervisionError",
    "Supervisor",
    "SupervisorSpec",
    "SupervisorStatistics",
    "TaskSpec",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "UpstreamError",
    "is_outage",
    "open_supervisor",
]
