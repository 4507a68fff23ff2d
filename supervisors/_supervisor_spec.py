"""What a supervisor is made from and what it reports: strategy, spec, statistics.

A ``SupervisorSpec`` is a child spec like any other (so supervisors nest into trees);
``create`` makes the running ``Supervisor`` (in ``_supervisor``), which applies the
``Strategy`` and reports ``SupervisorStatistics``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from config import RUNTIME_DEFAULTS, RestartSettings
from supervisors._actor import ActorSpec
from supervisors._child import ChildSpec, Restart
from supervisors._policies import Jitter
from supervisors._registry import Registry

if TYPE_CHECKING:
    from supervisors._supervisor import Supervisor

__all__ = ["Strategy", "SupervisorSpec", "SupervisorStatistics"]


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """Child spec of a supervisor (so supervisors nest into trees)."""

    name: str
    children: Sequence[ChildSpec]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    restarts: RestartSettings = RUNTIME_DEFAULTS.restart
    registry: Registry | None = None
    restart: Restart = Restart.PERMANENT
    jitter: Jitter = random.uniform

    @property
    def shutdown_s(self) -> float:
        """No budget of its own (OTP's ``infinity`` for supervisors).

        A stopping supervisor stops its children one by one, each within that child's
        own ``shutdown_s``, so its stop is bounded by its leaves, dynamic children
        included; a budget here could only cut their graceful stops short.
        """
        return math.inf

    def create(self) -> Supervisor:
        from supervisors._supervisor import Supervisor  # the one that imports this module

        return Supervisor(self)

    def close(self) -> None:
        """The subtree is gone for good: close every static child, leave the registry."""
        for child in self.children:
            child.close()
            if self.registry is not None and isinstance(child, ActorSpec):
                self.registry.discard(child.ref)


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    name: str
    strategy: Strategy
    children: tuple[str, ...]
    running: tuple[str, ...]
    restarts: int
    escalations: int
