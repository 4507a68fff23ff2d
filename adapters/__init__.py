"""Adapters: every conversation with the outside world (Postgres, Redis, providers).

Each is a ``typing.Protocol`` with a real implementation; vendor exceptions are
translated into the project's error tree here and never leak further.
"""

from adapters._accounts import Account, AccountStore, NewAccount, PostgresAccountStore
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
    load_migrations,
    migrate_down,
    migrate_up,
    migration_status,
)
from adapters._notification_store import PostgresNotificationStore, effect_name
from adapters._notification_store_memory import MemoryNotificationStore
from adapters._notifications import (
    AppointmentFacts,
    AttemptNote,
    Channel,
    Email,
    EmailProvider,
    FailedEmail,
    LogEntry,
    LogStatus,
    NotificationStore,
    OrderFacts,
    RecipientRefused,
    ShowroomFacts,
    Sms,
    SmsProvider,
    mask,
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
from adapters._rate_limit import Decision, RateLimiter
from adapters._redis import Cache, CacheOperation, RedisCache, open_redis
from adapters._redis import Client as RedisClient
from adapters._seed import DEMO_SEED, load_seed
from adapters._ses import SesEmail, open_ses
from adapters._sessions import Rotated, SessionProfile, Sessions
from adapters._showrooms import PostgresShowrooms, Showroom, ShowroomStore
from adapters._sms import LogSms, Msg91Sms, TwilioSms, open_msg91, open_twilio
from adapters._smtp import SmtpEmail
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
    "Account",
    "AccountStore",
    "Appointment",
    "AppointmentFacts",
    "AttemptNote",
    "AvailabilityCopy",
    "AvailabilityDay",
    "BatchOutcome",
    "Booked",
    "BookingCache",
    "BookingStore",
    "Cache",
    "CacheChanges",
    "CacheOperation",
    "Channel",
    "Connection",
    "Database",
    "DatabaseStatistics",
    "Decision",
    "DependencyGate",
    "Email",
    "EmailProvider",
    "EventOutcome",
    "FailedEmail",
    "GateState",
    "GateStatistics",
    "KeyReplay",
    "LimitReached",
    "LockReply",
    "LockRequest",
    "LogEntry",
    "LogSms",
    "LogStatus",
    "MemoryBookingCache",
    "MemoryBookingStore",
    "MemoryNotificationStore",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "Msg91Sms",
    "NewAccount",
    "NewBooking",
    "NewOrder",
    "NotificationStore",
    "Operation",
    "Order",
    "OrderFacts",
    "OrderLine",
    "OrderStore",
    "OutboxJob",
    "Payload",
    "PaymentDeclined",
    "PaymentIntent",
    "Payments",
    "Placed",
    "PolicyViolation",
    "PostgresAccountStore",
    "PostgresBookingStore",
    "PostgresDatabase",
    "PostgresNotificationStore",
    "PostgresOrderStore",
    "PostgresProducts",
    "PostgresShowrooms",
    "Priced",
    "Product",
    "ProductCache",
    "ProductCategory",
    "ProductStore",
    "RateLimiter",
    "RecipientRefused",
    "RedisBookingCache",
    "RedisCache",
    "RedisClient",
    "RedisProductCache",
    "Replayed",
    "Rotated",
    "ScheduleRows",
    "SesEmail",
    "SessionProfile",
    "Sessions",
    "Showroom",
    "ShowroomFacts",
    "ShowroomStore",
    "SlotRef",
    "SlotTaken",
    "Sms",
    "SmsProvider",
    "SmtpEmail",
    "StripePayments",
    "TwilioSms",
    "add_many_to_outbox",
    "add_to_outbox",
    "check_policy",
    "effect_name",
    "load_migrations",
    "load_seed",
    "mask",
    "migrate_down",
    "migrate_up",
    "migration_status",
    "open_database",
    "open_msg91",
    "open_redis",
    "open_ses",
    "open_stripe",
    "open_twilio",
    "record_effect_once",
]
