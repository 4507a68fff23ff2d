"""``--workers N``: N service processes sharing one listening socket.

The parent binds the socket (so ``--port 0`` works and every worker accepts from
the same queue), then supervises N worker processes with the actor runtime's own
supervisor: a worker that dies is restarted (with backoff, within the restart
intensity). On SIGTERM the parent closes its copy of the listening socket, then
stops the workers in reverse order: each gets SIGTERM and drains exactly like a
single-process service; one that outlives its budget is killed.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
import trio

from config import Settings
from service._metrics import MULTIPROCESS_DIR
from service._signals import run_until_signalled
from supervisors import ProcessExited, Supervisor, SupervisorSpec, TaskSpec

__all__ = ["run_workers"]

log = structlog.get_logger("gateway.workers")


def resident_mb(pid: int) -> float | None:
    """The process's resident memory in MiB (Linux /proc), or None if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class WorkerProcess:
    """One worker process; a crash (non-zero exit) is reported to the supervisor. Past
    its memory limit it is drained (SIGTERM) and ends normally: the supervisor starts a
    fresh one (a ``PERMANENT`` child), with its usual restart budget and backoff."""

    def __init__(
        self,
        index: int,
        fd: int,
        environment: Mapping[str, str],
        *,
        module: str,
        cleanup_s: float,
        memory_limit_mb: int | None = None,
        memory_check_s: float = 1.0,
    ) -> None:
        self._module = module
        self._index = index
        self._cleanup_s = cleanup_s
        self._fd = fd
        self._environment = environment
        self._process: trio.Process | None = None
        self._stopping = False
        self._memory_limit_mb = memory_limit_mb
        self._memory_check_s = memory_check_s
        self._replacing = False

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        command = [sys.executable, "-m", self._module, "serve", "--fd", str(self._fd)]
        process = await trio.lowlevel.open_process(
            command, pass_fds=(self._fd,), env=dict(self._environment)
        )
        self._process = process
        log.info("worker_started", worker=self._index, pid=process.pid)
        task_status.started(process.pid)
        try:
            async with trio.open_nursery() as nursery:
                if self._memory_limit_mb is not None:
                    nursery.start_soon(self._watch_memory, process, self._memory_limit_mb)
                status = await process.wait()
                nursery.cancel_scope.cancel()
        finally:
            if process.returncode is None:  # cancelled: the stop budget ran out
                process.kill()
                with trio.move_on_after(self._cleanup_s, shield=True):
                    await process.wait()
        log.info("worker_exited", worker=self._index, pid=process.pid, status=status)
        if status != 0 and not (self._stopping or self._replacing):
            raise ProcessExited(f"worker {self._index}", status)

    async def _watch_memory(self, process: trio.Process, limit_mb: int) -> None:
        while True:
            await trio.sleep(self._memory_check_s)
            rss = resident_mb(process.pid)
            if rss is not None and rss > limit_mb and not self._stopping:
                log.warning(
                    "worker_memory_exceeded",
                    worker=self._index,
                    pid=process.pid,
                    resident_mb=round(rss),
                    limit_mb=limit_mb,
                )
                self._replacing = True
                process.send_signal(signal.SIGTERM)  # drain: its requests finish
                return

    def request_stop(self, *, final: bool) -> None:
        # Once only: a second SIGTERM makes a worker exit at once instead of draining.
        if self._stopping:
            return
        self._stopping = True
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


async def run_workers(
    settings: Settings, environment: Mapping[str, str], *, module: str = "service"
) -> int:
    """Supervise ``settings.workers`` processes (each ``python -m module serve``) until
    a signal stops them."""
    sock = _listening_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    budget = settings.drain_timeout_s + 2 * settings.cleanup_timeout_s
    # The workers' metric files: any worker's /metrics adds them all up. Fresh per run
    # (stale files would add a previous run's counts).
    metrics_dir = tempfile.mkdtemp(prefix="lomash-metrics-")
    env = {**environment, "LOMASH_WORKERS": "1", MULTIPROCESS_DIR: metrics_dir}

    live: dict[int, WorkerProcess] = {}

    def worker(n: int) -> TaskSpec:
        def start() -> WorkerProcess:
            live[n] = WorkerProcess(
                n,
                sock.fileno(),
                env,
                module=module,
                cleanup_s=settings.cleanup_timeout_s,
                memory_limit_mb=settings.worker_memory_limit_mb,
                memory_check_s=settings.worker_memory_check_s,
            )
            return live[n]

        return TaskSpec(f"worker-{n}", start, shutdown_s=budget)

    tree = SupervisorSpec(
        "workers",
        [worker(n) for n in range(1, settings.workers + 1)],
        restarts=settings.runtime.restart,
    )

    def started(supervisor: Supervisor) -> None:
        log.info("workers_listening", url=f"http://{host}:{port}", workers=settings.workers)

    def closing(signal_name: str) -> None:
        sock.close()  # our copy of the listener: new connections are refused from now on
        # Every worker drains at once; the supervisor then waits for them in reverse
        # order (a worker stopped one after another would keep accepting meanwhile).
        for process in live.values():
            process.request_stop(final=True)

    try:
        return await run_until_signalled(
            tree,
            on_started=started,
            on_signal=closing,
            hard_stop_s=budget + settings.cleanup_timeout_s,
        )
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
