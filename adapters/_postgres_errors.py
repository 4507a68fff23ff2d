"""asyncpg and OS errors as the project's (the one translation point), and the
handler that keeps asyncpg's orphaned cleanups from ending the event loop."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import structlog
import trio_asyncio

from adapters._gate import describe_outage
from supervisors import (
    Conflict,
    ConnectionLost,
    Contention,
    DatabaseError,
    InvalidData,
    LomashError,
    OperationTimeout,
)

__all__ = ["TRANSLATED_ERRORS", "keep_orphans_quiet", "translate"]

log = structlog.get_logger("adapters.postgres")


# asyncpg / OS errors that mean "the server is not reachable or not serving": the
# outage class. 25006 (read-only transaction) is a write sent to a standby, as happens
# right after a failover until DNS moves: an outage of the primary too.
_OUTAGE_SQLSTATES = {"57P01", "57P02", "57P03", "53300", "25006"}
_CONTENTION_SQLSTATES = {"40001", "40P01", "55P03"}
_CONFLICT_SQLSTATES = {"23505": "duplicate", "23P01": "overlap", "23503": "reference"}
_BAD_DATA_SQLSTATES = {"23502", "23514"}


def translate(error: BaseException, *, target: str, statement_timeout_s: float) -> LomashError:
    """The project's error for an asyncpg / OS error (the one translation point)."""
    if isinstance(error, asyncpg.PostgresError):
        state = error.sqlstate or ""
        if state in _OUTAGE_SQLSTATES or state.startswith("08"):
            return ConnectionLost(describe_outage(error), dependency=target)
        if state == "57014":
            return OperationTimeout(
                "statement timeout", dependency=target, timeout_s=statement_timeout_s
            )
        if state in _CONTENTION_SQLSTATES:
            return Contention(f"contention ({state})", dependency=target)
        constraint = getattr(error, "constraint_name", None)
        if state in _CONFLICT_SQLSTATES:
            return Conflict(
                f"{_CONFLICT_SQLSTATES[state]} violates {constraint}",
                code=_CONFLICT_SQLSTATES[state],
                constraint=constraint,
            )
        if state in _BAD_DATA_SQLSTATES or state.startswith("22"):
            return InvalidData(str(error).splitlines()[0], constraint=constraint)
        return DatabaseError(f"{type(error).__name__}: {error}", sqlstate=state or None)
    if isinstance(error, OSError | TimeoutError | asyncio.TimeoutError | asyncpg.InterfaceError):
        return ConnectionLost(describe_outage(error), dependency=target)
    return DatabaseError(f"{type(error).__name__}: {error}", sqlstate=None)


TRANSLATED_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def keep_orphans_quiet() -> None:
    """asyncpg cleans up after a cancelled call in tasks of its own (the pool's
    shielded release); if that cleanup fails (the server is slow, or gone) nobody is
    left to hear it, and trio-asyncio's default handler would re-raise it and end the
    whole event loop. Such an orphaned failure is logged; anything else goes to the
    handler that was there."""
    loop = trio_asyncio.current_loop.get()
    if loop is None or getattr(loop, "_lomash_orphans_quiet", False):
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        future = context.get("future")
        code = getattr(getattr(future, "get_coro", lambda: None)(), "cr_code", None)
        from_asyncpg = code is not None and f"{os.sep}asyncpg{os.sep}" in code.co_filename
        if isinstance(error, TRANSLATED_ERRORS) and from_asyncpg:
            log.warning("abandoned_call_cleanup_failed", reason=describe_outage(error))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    setattr(loop, "_lomash_orphans_quiet", True)  # noqa: B010 (a foreign object)
