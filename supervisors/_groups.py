"""Exception groups out of nurseries, reduced to the one error that matters.

A handler that uses a nursery, or an actor that runs handlers concurrently, sees its
errors wrapped in an ``ExceptionGroup``. When a group holds exactly one real error
(anything but ``trio.Cancelled``, which only says its task was cut short) that error
is what happened: it answers an asker, names a crash in the logs, and is the cause of
an escalation. Any other group stays a group.
"""

from __future__ import annotations

from collections.abc import Iterator

import trio

__all__ = ["sole_error"]


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one leaf of ``group`` that is not ``trio.Cancelled``, or None if not exactly one."""
    _, rest = group.split(trio.Cancelled)
    if rest is None:
        return None
    leaves = _leaves(rest)
    first = next(leaves)
    return first if next(leaves, None) is None else None


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error
