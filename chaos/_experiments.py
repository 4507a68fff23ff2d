"""Every experiment ``lomash chaos`` knows, by name."""

from __future__ import annotations

from chaos._experiment import Experiment
from chaos._failovers import PostgresFailover, RedisFailover
from chaos._faults import CpuHog, LatencyInjector, MemoryLeak, NetworkPartition, PodKiller

__all__ = ["EXPERIMENTS", "experiment_named"]

EXPERIMENTS: dict[str, type[Experiment]] = {
    e.name: e
    for e in (
        PodKiller,
        LatencyInjector,
        NetworkPartition,
        CpuHog,
        MemoryLeak,
        PostgresFailover,
        RedisFailover,
    )
}


def experiment_named(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]()
    except KeyError:
        raise ValueError(f"no experiment {name!r}: one of {', '.join(EXPERIMENTS)}") from None
