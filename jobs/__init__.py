"""Background work: the durable job queue and everything that feeds or drains it.

- the queue itself (``JobQueue``, a Protocol) with two implementations that pass one
  contract suite: ``RedisJobQueue`` (Streams, sorted sets, Lua in ``jobs/lua/``) and
  ``MemoryJobQueue`` (in-process, on trio's clock, for virtual-time simulations);
- ``JobWorker`` (leases, heartbeats, attempts, dead-letter alerts), ``Scheduler``
  (the spec's cron jobs, London time, ``CronSchedule``), ``QueueTrimmer``;
- ``OutboxRelay``: committed outbox rows (``adapters.add_to_outbox``) to the queue.

Domain actors own what a job *does* (``actors.BookingReplayer`` handles
``booking.replay``); this package owns how jobs are kept, delivered and retried.
"""

from adapters import Payload
from config import QueuePolicy
from jobs._alerts import DeadLetterAlerts
from jobs._cron import CronSchedule
from jobs._memory import MemoryJobQueue
from jobs._queue import (
    AttemptRecord,
    DeadJob,
    FailOutcome,
    Job,
    JobQueue,
    JobState,
    Lease,
    LeaseLost,
    QueueStatistics,
    RetryLater,
)
from jobs._redis import RedisJobQueue
from jobs._relay import OUTBOX_DEFAULTS, JobEnqueuer, OutboxRelay, OutboxStatistics
from jobs._scheduler import Clock, MissedTicks, Schedule, Scheduler, SystemClock, spec_schedules
from jobs._trimmer import QueueTrimmer
from jobs._worker import JobWorker, RunJob, WorkerStatistics

__all__ = [
    "OUTBOX_DEFAULTS",
    "AttemptRecord",
    "Clock",
    "CronSchedule",
    "DeadJob",
    "DeadLetterAlerts",
    "FailOutcome",
    "Job",
    "JobEnqueuer",
    "JobQueue",
    "JobState",
    "JobWorker",
    "Lease",
    "LeaseLost",
    "MemoryJobQueue",
    "MissedTicks",
    "OutboxRelay",
    "OutboxStatistics",
    "Payload",
    "QueuePolicy",
    "QueueStatistics",
    "QueueTrimmer",
    "RedisJobQueue",
    "RetryLater",
    "RunJob",
    "Schedule",
    "Scheduler",
    "SystemClock",
    "WorkerStatistics",
    "spec_schedules",
]
