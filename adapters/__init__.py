"""Adapters: every conversation with the outside world (Postgres, Redis, providers).

Each is a ``typing.Protocol`` with a real implementation; vendor exceptions are
translated into the project's error tree here and never leak further.
"""

from adapters._alerts import DeadLetterAlerts
from adapters._gate import GateStatistics, ReconnectGate
from adapters._jobs import (
    AttemptRecord,
    DeadJob,
    FailOutcome,
    Job,
    JobQueue,
    JobState,
    Lease,
    LeaseLost,
    Payload,
    QueuePolicy,
    QueueStatistics,
)
from adapters._jobs_memory import MemoryJobQueue
from adapters._jobs_redis import RedisJobQueue
from adapters._migrations import (
    MIGRATIONS_DIR,
    Migration,
    MigrationError,
    MigrationStatus,
    PolicyViolation,
    check_policy,
    migrate_down,
    migrate_up,
    migration_status,
)
from adapters._outbox import OutboxRelay, add_to_outbox, record_effect_once
from adapters._postgres import (
    Connection,
    Database,
    DatabaseStatistics,
    Operation,
    PostgresDatabase,
    open_database,
)
from adapters._redis import Cache, CacheOperation, RedisCache, open_redis
from adapters._showrooms import PostgresShowrooms, Showroom, ShowroomStore

__all__ = [
    "MIGRATIONS_DIR",
    "AttemptRecord",
    "Cache",
    "CacheOperation",
    "Connection",
    "Database",
    "DatabaseStatistics",
    "DeadJob",
    "DeadLetterAlerts",
    "FailOutcome",
    "GateStatistics",
    "Job",
    "JobQueue",
    "JobState",
    "Lease",
    "LeaseLost",
    "MemoryJobQueue",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "Operation",
    "OutboxRelay",
    "Payload",
    "PolicyViolation",
    "PostgresDatabase",
    "PostgresShowrooms",
    "QueuePolicy",
    "QueueStatistics",
    "ReconnectGate",
    "RedisCache",
    "RedisJobQueue",
    "Showroom",
    "ShowroomStore",
    "add_to_outbox",
    "check_policy",
    "migrate_down",
    "migrate_up",
    "migration_status",
    "open_database",
    "open_redis",
    "record_effect_once",
]
