"""One actor's deadlines, kept by one task instead of a cancel scope's deadline each.

Every ask to an actor waits at most its ``ask_timeout_s`` and every message runs at
most its ``message_timeout_s``: one timeout each for the whole actor, so deadlines
come in the order they are set and two FIFO queues hold them (no heap). A deadline on
a trio cancel scope costs its registration in the run loop's heap and removal on
exit, per ask and per message; the ``Timer`` task instead sleeps until the earliest
deadline still pending, expires what is due and drops what was answered. A finished
ask or message is dropped from the queue's head by whoever finished it (the actor
answers in order, so it is nearly always at the head), which keeps the queues as
short as what is in flight.

The timer runs beside one incarnation (``_Incarnation.run``). When it stops, the
askers it watched are released: each keeps its own deadline from then on (a cancel
scope), so an ask stays bounded across restarts and the gaps between them.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import trio

from supervisors._errors import AskTimeout
from supervisors._mailbox import Reply

__all__ = ["Running", "Timer"]


class Running:
    """A message in its handler, with the scope that cancels it at its deadline."""

    __slots__ = ("deadline", "finished", "scope")

    def __init__(self, deadline: float, scope: trio.CancelScope) -> None:
        self.deadline = deadline
        self.scope = scope
        self.finished = False


class Timer:
    def __init__(self, actor: str, ask_timeout_s: float, message_timeout_s: float | None):
        self._actor = actor
        self.ask_timeout_s = ask_timeout_s
        self.message_timeout_s = message_timeout_s
        self._asks: deque[tuple[float, Reply[Any]]] = deque()
        self._running: deque[Running] = deque()
        # Any deadline set from now on is at least this far away: the longest the
        # task may sleep with nothing pending.
        self._idle_s = min(ask_timeout_s, message_timeout_s or math.inf)
        self.live = False

    # -- asks -----------------------------------------------------------------

    def watch(self, deadline: float, reply: Reply[Any]) -> None:
        self._asks.append((deadline, reply))

    def answered(self) -> None:
        """An ask ended: drop the answered ones at the head."""
        asks = self._asks
        while asks and (asks[0][1].done or asks[0][1].abandoned):
            asks.popleft()

    # -- messages ---------------------------------------------------------------

    def start(self, scope: trio.CancelScope) -> Running:
        assert self.message_timeout_s is not None
        running = Running(trio.current_time() + self.message_timeout_s, scope)
        self._running.append(running)
        return running

    def finish(self, running: Running) -> None:
        running.finished = True
        queue = self._running
        while queue and queue[0].finished:
            queue.popleft()

    # -- the task ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.live = True
        task_status.started()
        try:
            while True:
                now = trio.current_time()
                wake = min(self._expire_asks(now), self._expire_messages(now), now + self._idle_s)
                await trio.sleep_until(wake)
        finally:
            self.live = False
            asks, self._asks = self._asks, deque()
            for _, reply in asks:
                reply.release()

    def _expire_asks(self, now: float) -> float:
        """Expire the asks due by ``now``; the next pending deadline (or inf)."""
        asks = self._asks
        while asks:
            deadline, reply = asks[0]
            if not (reply.done or reply.abandoned):
                if deadline > now:
                    return deadline
                reply.expire(AskTimeout(self._actor, self.ask_timeout_s))
            asks.popleft()
        return math.inf

    def _expire_messages(self, now: float) -> float:
        queue = self._running
        while queue:
            running = queue[0]
            if not running.finished:
                if running.deadline > now:
                    return running.deadline
                running.scope.cancel()
            queue.popleft()
        return math.inf
