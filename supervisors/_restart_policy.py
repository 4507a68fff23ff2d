"""What a supervisor restarts when a child ends, and when: its restart policy.

When a child ends, the supervisor (one task, owning all of this state) decides:

- restart type: permanent children always restart, transient ones only after a
  crash, temporary ones never;
- intensity: more than ``max_restarts`` restarts within ``within_s`` seconds and
  the supervisor stops every child and fails with ``RestartIntensityExceeded``,
  which its parent sees as a crash of this child (escalation);
- backoff: the first restart after a stable period is immediate; consecutive ones
  wait ``backoff_min_s * factor**(n-2)`` (capped, jittered); a child that ran for
  ``backoff_reset_s`` starts from scratch. The wait is a timer in the supervisor's
  nursery, not a sleep: meanwhile the supervisor handles other exits and commands;
- strategy: ``ONE_FOR_ONE`` restarts the child; ``ONE_FOR_ALL`` stops the others
  (reverse order) and restarts everyone (in order); ``REST_FOR_ONE`` does that for
  the children started after the failed one. Temporary children stopped with the
  group are not restarted (OTP): they are forgotten.

The restart type is ``Restart.restarts_after``; the rest is here, as pure decisions
(no I/O) the supervisor applies.
"""

from __future__ import annotations

from collections import deque

from config import RestartSettings
from supervisors._control import _Child
from supervisors._policies import Jitter
from supervisors._supervisor_spec import Strategy


class _Intensity:
    """The restarts of one supervisor run within the last ``within_s`` seconds."""

    def __init__(self, settings: RestartSettings) -> None:
        self._settings = settings
        self._restart_times: deque[float] = deque()

    def exceeded(self, now: float) -> bool:
        """Count a restart at ``now``: does it make more than ``max_restarts``?"""
        self._restart_times.append(now)
        while self._restart_times[0] <= now - self._settings.within_s:
            self._restart_times.popleft()
        return len(self._restart_times) > self._settings.max_restarts


def _backoff(s: RestartSettings, jitter: Jitter, consecutive: int) -> float:
    """The wait before the ``consecutive``-th restart in a row (the first: none)."""
    if consecutive <= 1:
        return 0.0
    base = min(s.backoff_max_s, s.backoff_min_s * s.backoff_factor ** (consecutive - 2))
    return max(0.0, base * (1.0 + jitter(-s.backoff_jitter, s.backoff_jitter)))


def _restart_group(strategy: Strategy, children: list[_Child], child: _Child) -> list[_Child]:
    """The children that stop and restart because ``child`` ended, in start order."""
    index = children.index(child)
    match strategy:
        case Strategy.ONE_FOR_ONE:
            group = [child]
        case Strategy.ONE_FOR_ALL:
            group = list(children)
        case Strategy.REST_FOR_ONE:
            group = children[index:]
    return group
