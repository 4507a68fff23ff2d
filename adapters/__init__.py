"""Adapters: every conversation with the outside world (Postgres, Redis, providers).

Each is a ``typing.Protocol`` with a real implementation; vendor exceptions are
translated into the project's error tree here and never leak further.
"""

from adapters._booking_cache import (
    AvailabilityCopy,
    AvailabilityDay,
    BookingCache,
    CacheChanges,
    LockReply,
    LockRequest,
    SlotRef,
)
from adapters._booking_cache_memory import MemoryBookingCache
from adapters._booking_cache_redis import RedisBookingCache
from adapters._booking_records import (
    Appointment,
    BatchOutcome,
    Booked,
    KeyReplay,
    LimitReached,
    NewBooking,
    Replayed,
    ScheduleRows,
    SlotTaken,
)
from adapters._booking_store import BookingStore, PostgresBookingStore
from adapters._booking_store_memory import MemoryBookingStore
from adapters._gate import DependencyGate, GateState, GateStatistics
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
from adapters._orders import (
    EventOutcome,
    NewOrder,
    Order,
    OrderLine,
    OrderStore,
    Placed,
    PostgresOrderStore,
    Priced,
)
from adapters._outbox import (
    OutboxJob,
    Payload,
    add_many_to_outbox,
    add_to_outbox,
    record_effect_once,
)
from adapters._postgres import (
    Connection,
    Database,
    DatabaseStatistics,
    Operation,
    PostgresDatabase,
    open_database,
)
from adapters._products import (
    PostgresProducts,
    Product,
    ProductCache,
    ProductCategory,
    ProductStore,
    RedisProductCache,
)
from adapters._redis import Cache, CacheOperation, RedisCache, open_redis
from adapters._redis import Client as RedisClient
from adapters._seed import DEMO_SEED, load_seed
from adapters._showrooms import PostgresShowrooms, Showroom, ShowroomStore
from adapters._stripe import (
    PaymentDeclined,
    PaymentIntent,
    Payments,
    StripePayments,
    open_stripe,
)

__all__ = [
    "DEMO_SEED",
    "MIGRATIONS_DIR",
    "Appointment",
    "AvailabilityCopy",
    "AvailabilityDay",
    "BatchOutcome",
    "Booked",
    "BookingCache",
    "BookingStore",
    "Cache",
    "CacheChanges",
    "CacheOperation",
    "Connection",
    "Database",
    "DatabaseStatistics",
    "DependencyGate",
    "EventOutcome",
    "GateState",
    "GateStatistics",
    "KeyReplay",
    "LimitReached",
    "LockReply",
    "LockRequest",
    "MemoryBookingCache",
    "MemoryBookingStore",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "NewBooking",
    "NewOrder",
    "Operation",
    "Order",
    "OrderLine",
    "OrderStore",
    "OutboxJob",
    "Payload",
    "PaymentDeclined",
    "PaymentIntent",
    "Payments",
    "Placed",
    "PolicyViolation",
    "PostgresBookingStore",
    "PostgresDatabase",
    "PostgresOrderStore",
    "PostgresProducts",
    "PostgresShowrooms",
    "Priced",
    "Product",
    "ProductCache",
    "ProductCategory",
    "ProductStore",
    "RedisBookingCache",
    "RedisCache",
    "RedisClient",
    "RedisProductCache",
    "Replayed",
    "ScheduleRows",
    "Showroom",
    "ShowroomStore",
    "SlotRef",
    "SlotTaken",
    "StripePayments",
    "add_many_to_outbox",
    "add_to_outbox",
    "check_policy",
    "load_seed",
    "migrate_down",
    "migrate_up",
    "migration_status",
    "open_database",
    "open_redis",
    "open_stripe",
    "record_effect_once",
]
