"""Adapters: every conversation with the outside world (Postgres, Redis, providers).

Each is a ``typing.Protocol`` with a real implementation; vendor exceptions are
translated into the project's error tree here and never leak further.
"""

from adapters._appointments import (
    book_batch,
    booked_between,
    cancel,
    fetch_appointment,
    load_schedule_rows,
    replay_pending,
    reschedule,
    trim_idempotency_keys,
)
from adapters._booking_records import (
    Appointment,
    BatchOutcome,
    Booked,
    KeyReplay,
    LimitReached,
    NewBooking,
    ScheduleRows,
    SlotTaken,
)
from adapters._gate import GateStatistics, ReconnectGate
from adapters._holds import (
    CacheChanges,
    LockReply,
    LockRequest,
    acquire_locks,
    cached_values,
    hold_pending,
    release_pending,
    store_if_unchanged,
)
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
from adapters._outbox import Payload, add_many_to_outbox, add_to_outbox, record_effect_once
from adapters._postgres import (
    Connection,
    Database,
    DatabaseStatistics,
    Operation,
    PostgresDatabase,
    open_database,
)
from adapters._redis import Cache, CacheOperation, RedisCache, open_redis
from adapters._redis import Client as RedisClient
from adapters._seed import DEMO_SEED, load_seed
from adapters._showrooms import PostgresShowrooms, Showroom, ShowroomStore

__all__ = [
    "DEMO_SEED",
    "MIGRATIONS_DIR",
    "Appointment",
    "BatchOutcome",
    "Booked",
    "Cache",
    "CacheChanges",
    "CacheOperation",
    "Connection",
    "Database",
    "DatabaseStatistics",
    "GateStatistics",
    "KeyReplay",
    "LimitReached",
    "LockReply",
    "LockRequest",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "NewBooking",
    "Operation",
    "Payload",
    "PolicyViolation",
    "PostgresDatabase",
    "PostgresShowrooms",
    "ReconnectGate",
    "RedisCache",
    "RedisClient",
    "ScheduleRows",
    "Showroom",
    "ShowroomStore",
    "SlotTaken",
    "acquire_locks",
    "add_many_to_outbox",
    "add_to_outbox",
    "book_batch",
    "booked_between",
    "cached_values",
    "cancel",
    "check_policy",
    "fetch_appointment",
    "hold_pending",
    "load_schedule_rows",
    "load_seed",
    "migrate_down",
    "migrate_up",
    "migration_status",
    "open_database",
    "open_redis",
    "record_effect_once",
    "release_pending",
    "replay_pending",
    "reschedule",
    "store_if_unchanged",
    "trim_idempotency_keys",
]
