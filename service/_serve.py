"""One service process: trio + trio-asyncio, the supervision tree, and its signals.

The process owns SIGTERM and SIGINT (hypercorn's single-process path installs no
handler: SIGTERM would kill it at once). First signal: readiness turns 503, the
tree stops in reverse order (the HTTP listener closes, in-flight requests finish
within ``drain_timeout_s``, actors drain, Redis and Postgres close) and the process
exits 0. A hard deadline (drain + cleanup) bounds it all. Second signal: exit at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog
import trio_asyncio

from adapters import load_seed, migrate_up
from config import Settings
from gateway import Lifecycle
from service._signals import run_until_signalled
from service._tree import Extension, build_tree
from supervisors import Supervisor

__all__ = ["serve"]

log = structlog.get_logger("gateway")


async def serve(
    settings: Settings,
    *,
    bind: str,
    migrations: Path | None,
    seed: bool = False,
    extensions: Sequence[Extension] = (),
    on_ready: Callable[[list[str]], None] | None = None,
) -> int:
    """Run the service until a signal stops it; returns the exit status. ``on_ready``
    is called with the URLs the HTTP server listens on, once it does."""
    async with trio_asyncio.open_loop():
        if migrations is not None:
            assert settings.database.url is not None
            applied = await migrate_up(settings.database.url, migrations)
            log.info("migrations_applied", versions=[m.version for m in applied])
        if seed:
            assert settings.database.url is not None
            await load_seed(settings.database.url)
            log.info("demo_data_loaded")
        lifecycle = Lifecycle()

        def started(supervisor: Supervisor) -> None:
            log.info("service_started", service=settings.service, pid=os.getpid())
            if on_ready is not None:
                on_ready(list(supervisor.handle("http")))

        def draining(signal_name: str) -> None:
            lifecycle.draining = True

        return await run_until_signalled(
            build_tree(settings, lifecycle, bind=bind, extensions=extensions),
            on_started=started,
            on_signal=draining,
            hard_stop_s=settings.drain_timeout_s + 2 * settings.cleanup_timeout_s,
        )
