"""The operator's commands of ``lomash``: the dead-letter queue, the configuration in
effect, the migration policy check, the local development environment file.

``make run`` writes ``.data/env`` (the embedded servers' URLs) once it is serving;
``lomash`` reads it when ``LOMASH_DATABASE_URL`` / ``LOMASH_REDIS_URL`` are not set,
so ``lomash dlq list`` or ``lomash migrate status`` work against ``make run``'s
servers without copying URLs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from adapters import MIGRATIONS_DIR, check_policy, load_migrations, open_redis
from config import Settings, environment_variables
from jobs import RedisJobQueue

__all__ = [
    "ENV_FILE",
    "announce",
    "dlq",
    "environ_note",
    "environment_with_env_file",
    "forget_env_file",
    "migrate_check",
    "print_config",
    "write_env_file",
]

EXIT_USAGE = 2
ENV_FILE = "env"  # under LOMASH_DATA_DIR
_SECRET = re.compile(r"(SECRET|TOKEN|PASSWORD|_KEY\b|_KEYS\b|_KEY_ID\b)")
_MASK = "****"


def masked(variable: str, value: object) -> str:
    """A setting's value as ``lomash config`` shows it: secrets as ``****``, a URL's
    password too."""
    if value is None:
        return "None"
    text = ",".join(sorted(str(v) for v in value)) if isinstance(value, frozenset) else str(value)
    if _SECRET.search(variable):
        return _MASK
    if "://" in text:
        parts = urlsplit(text)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", f":{_MASK}@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
    return text


def print_config(settings: Settings, environ: Mapping[str, str]) -> int:
    """Every variable with the value in effect and where it came from."""
    defaults = dict(environment_variables())
    width = max(len(variable) for variable in defaults)
    for variable, value in environment_variables(settings):
        if variable in environ:
            source = "environment"
        elif value != defaults[variable]:
            source = "make run" if variable in _DEVELOPMENT else "set"
        else:
            source = "default"
        print(f"{variable:<{width}} = {masked(variable, value)}  ({source})")
    return 0


# What ``.data/env`` may provide (the embedded servers make run started).
_DEVELOPMENT = ("LOMASH_DATABASE_URL", "LOMASH_REDIS_URL")


def write_env_file(data_dir: Path, values: Mapping[str, str]) -> Path:
    """``make run``'s servers, for the ``lomash`` command run beside it."""
    path = data_dir / ENV_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{name}={value}" for name, value in values.items() if name in _DEVELOPMENT]
    path.write_text(
        "# written by make run; lomash reads it when no URL is set\n" + "\n".join(lines) + "\n"
    )
    return path


def forget_env_file(data_dir: Path) -> None:
    """The servers are gone: so is the file naming them."""
    (data_dir / ENV_FILE).unlink(missing_ok=True)


def announce(settings: Settings, data_dir: Path, urls: list[str]) -> None:
    """``make run`` is serving: where everything is, and ``.data/env`` written."""
    base = urls[0].rstrip("/") if urls else f"http://{settings.host}:{settings.port}"
    env_file = write_env_file(
        data_dir,
        {
            "LOMASH_DATABASE_URL": settings.database.url or "",
            "LOMASH_REDIS_URL": settings.redis.url or "",
        },
    )
    lines = [
        f"Lomash Wood is serving on {base}",
        f"  API docs        {base}/docs   (the contract: {base}/openapi.json)",
        f"  health          {base}/health",
        f"  metrics         {base}/metrics",
        f"  showrooms       {base}/v1/showrooms",
        f"  availability    {base}/v1/appointments/availability?type=SHOWROOM&showroom_id=leeds",
        f"  ops page        {base}/ops   (admin token {settings.admin_token}: this run's own)",
        f"  admin API       {base}/admin/overview   (Authorization: Bearer <that token>)",
        f"  PostgreSQL      {settings.database.url}   (embedded, under {data_dir})",
        f"  Redis           {settings.redis.url}   (embedded)",
    ]
    if settings.stripe.secret_key is not None:
        lines.append(f"  Stripe          {settings.stripe.api_base}   (local Stripe)")
    if settings.smtp.url:
        lines.append("  email           caught locally: lomash mail")
    lines.append(
        f"  lomash          reads {env_file} while this runs: lomash dlq list, "
        "lomash migrate status, lomash config"
    )
    print("\n".join(lines), flush=True)


def environment_with_env_file(environ: Mapping[str, str]) -> tuple[dict[str, str], Path | None]:
    """``environ`` plus the URLs of ``.data/env`` that ``environ`` does not set, and
    that file (None if it gave nothing)."""
    data_dir = Path(environ.get("LOMASH_DATA_DIR", Settings().data_dir))
    path = data_dir / ENV_FILE
    merged = dict(environ)
    if not path.is_file():
        return merged, None
    used = False
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name in _DEVELOPMENT and name not in environ:
            merged[name] = value.strip()
            used = True
    return merged, path if used else None


def migrate_check() -> int:
    """The additive-only policy over the migration files; says what it checked."""
    migrations = load_migrations()
    violations = check_policy()
    first, last = migrations[0].label, migrations[-1].label
    print(
        f"checked {len(migrations)} migrations ({first} .. {last}) in {MIGRATIONS_DIR}: "
        "names and versions contiguous, each up with its down, every up file additive "
        "(no DROP, TRUNCATE, DELETE, RENAME, column type change or SET NOT NULL unless "
        "it declares itself phase 2 of an earlier migration)"
    )
    for violation in violations:
        print(f"{violation.file}: {violation.reason}: {violation.statement}")
    print(f"{len(violations)} violation(s)" if violations else "ok: no violations")
    return 1 if violations else 0


async def dlq(settings: Settings, arguments: argparse.Namespace) -> int:
    async with open_redis(settings.redis, cleanup_s=settings.cleanup_timeout_s) as cache:
        jobs = RedisJobQueue(cache, prefix="jobs", default=settings.jobs)
        queue, job_id = arguments.queue, arguments.job_id
        queues = settings.jobs.service_queues()
        if queue is None:
            if arguments.action != "list":
                print(f"lomash dlq {arguments.action} needs a QUEUE", file=sys.stderr)
                return EXIT_USAGE
            for name in queues:
                dead = (await jobs.statistics(name)).dead
                print(f"{name:<16} {dead} dead" if dead else f"{name:<16} no dead jobs")
            return 0
        if queue not in queues:
            stats = await jobs.statistics(queue)
            if not any(dataclasses.astuple(stats)[1:]):
                print(
                    f"unknown queue {queue!r}: the service's queues are {', '.join(queues)}",
                    file=sys.stderr,
                )
                return EXIT_USAGE
        if arguments.action == "list":
            found = await jobs.dead(queue, limit=arguments.limit)
            if not found:
                print(f"no dead jobs in {queue!r}")
            for dead_job in found:
                last = dead_job.history[-1] if dead_job.history else None
                error = f"{last.error_type}: {last.error_message}" if last else ""
                job = dead_job.job
                print(f"{job.id}  {job.kind}  attempts={job.attempt}  {error}")
            return 0
        if arguments.action == "purge" and job_id is None:
            if not arguments.all:
                print(
                    f"lomash dlq purge {queue} needs a JOB_ID, or --all for every dead job",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            print(f"purged {await jobs.purge_dead(queue)}")
            return 0
        if job_id is None:
            print(f"lomash dlq {arguments.action} {queue} needs a JOB_ID", file=sys.stderr)
            return EXIT_USAGE
        if arguments.action == "show":
            dead_job = await jobs.dead_job(queue, job_id)
            print(json.dumps(dataclasses.asdict(dead_job), indent=2, default=str))
        elif arguments.action == "requeue":
            await jobs.requeue_dead(queue, job_id)
            print(f"requeued {job_id}")
        else:
            print(f"purged {await jobs.purge_dead(queue, job_id)}")
        return 0


def environ_note(path: Path | None) -> None:
    if path is not None:
        print(f"(using the servers of make run, from {path})", file=sys.stderr)
