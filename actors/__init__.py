"""Domain actors: one per domain (catalogue, slot booker, payment, notifier, ...),
plus the services that run background work (job workers, scheduler, trimming)."""

from actors._catalogue import Catalogue, ListShowrooms, catalogue_spec
from actors._scheduler import MissedTicks, Schedule, Scheduler, spec_schedules
from actors._trimmer import QueueTrimmer
from actors._worker import JobWorker, RunJob, WorkerStatistics

__all__ = [
    "Catalogue",
    "JobWorker",
    "ListShowrooms",
    "MissedTicks",
    "QueueTrimmer",
    "RunJob",
    "Schedule",
    "Scheduler",
    "WorkerStatistics",
    "catalogue_spec",
    "spec_schedules",
]
