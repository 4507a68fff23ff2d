"""The ``lomash`` command: serve, migrate, config.

    lomash serve [--host H] [--port P] [--workers N] [--migrate] [--seed]
    lomash migrate up|down|status|check [--steps N]
    lomash dlq list [QUEUE] | show|requeue|purge QUEUE [JOB_ID] [--limit N] [--all]
    lomash mail [--limit N]
    lomash config
    lomash smoke URL [--showroom ID] [--within S] [--metrics-token T]
    lomash chaos list | run NAME [--local | --target URL] [--duration S] ...

Settings come from ``LOMASH_*`` variables (see ``lomash config``); flags override
them. Without ``LOMASH_DATABASE_URL`` / ``LOMASH_REDIS_URL``, ``serve`` starts an
embedded PostgreSQL / Redis under ``LOMASH_DATA_DIR`` and applies the migrations,
and once serving writes their URLs to ``LOMASH_DATA_DIR/env``, which the other
commands read when no URL is set (service/_cli_ops.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import structlog
import trio
import trio_asyncio

from adapters import (
    MIGRATIONS_DIR,
    load_seed,
    migrate_down,
    migrate_up,
    migration_status,
)
from config import ConfigError, DatabaseSettings, RedisSettings, Settings
from devservers import caught, local_stripe, mail_catcher, register_webhook
from devservers._embedded import EmbeddedError, embedded_postgres, embedded_redis
from service._cli_ops import (
    announce,
    dlq,
    environ_note,
    environment_with_env_file,
    forget_env_file,
    migrate_check,
    print_config,
)
from service._logging import configure_logging
from service._serve import serve
from service._smoke import SmokeFailed, run_smoke
from service._tree import Extension
from service._workers import run_workers
from supervisors import ChildStartFailed, LomashError

__all__ = ["Launcher", "main"]

# The local Stripe (localstripe) takes any key of the test-key form.
LOCAL_STRIPE_KEY = "sk_test_lomash_local"
LOCAL_WEBHOOK_SECRET = "whsec_lomash_local"

EXIT_CONFIG = 2

log = structlog.get_logger("gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomash", description="Lomash Wood backend")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the service")
    serve_cmd.add_argument("--host", help="listen address (LOMASH_HOST)")
    serve_cmd.add_argument("--port", type=int, help="listen port, 0 for any (LOMASH_PORT)")
    serve_cmd.add_argument("--workers", type=int, help="worker processes (LOMASH_WORKERS)")
    serve_cmd.add_argument("--migrate", action="store_true", help="apply migrations first")
    serve_cmd.add_argument(
        "--seed", action="store_true", help="load the demo showrooms and consultants"
    )
    serve_cmd.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a worker's socket
    migrate = commands.add_parser("migrate", help="database migrations")
    migrate.add_argument("action", choices=["up", "down", "status", "check"])
    migrate.add_argument("--steps", type=int, default=1, help="how many to roll back (down)")
    dlq = commands.add_parser("dlq", help="the dead-letter queue")
    dlq.add_argument("action", choices=["list", "show", "requeue", "purge"])
    dlq.add_argument("queue", nargs="?", help="the queue (list without one: every queue)")
    dlq.add_argument("job_id", nargs="?")
    dlq.add_argument("--limit", type=int, default=50, help="how many to list")
    dlq.add_argument("--all", action="store_true", help="purge every dead job of the queue")
    mail = commands.add_parser("mail", help="email caught by make run's local mail catcher")
    mail.add_argument("--limit", type=int, default=10, help="how many, newest first")
    commands.add_parser(
        "config", help="every setting's variable, its value in effect and where it came from"
    )
    smoke = commands.add_parser("smoke", help="the canary's smoke test against a deployment")
    smoke.add_argument("url", help="the deployment's base URL, e.g. https://canary.internal")
    smoke.add_argument("--showroom", default="smoke-test", help="the reserved test showroom")
    smoke.add_argument("--within", type=float, default=60.0, help="seconds for every check")
    smoke.add_argument("--metrics-token", help="bearer token of /metrics, if it needs one")
    from chaos._cli import add_chaos_parser  # here: chaos runs the service's own launcher

    add_chaos_parser(commands)
    return parser


def _settings(arguments: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    settings = Settings.from_env(environ)
    overrides = {
        name: getattr(arguments, name)
        for name in ("host", "port", "workers")
        if getattr(arguments, name, None) is not None
    }
    try:
        return settings.with_overrides(**overrides)
    except ValueError as error:
        name, _, message = str(error).partition(": ")
        raise ConfigError(f"--{name}: {message}") from None


def _serve(settings: Settings, arguments: argparse.Namespace, launcher: Launcher) -> int:
    with ExitStack() as stack:
        embedded = False
        data_dir = Path(settings.data_dir)
        wait_s = settings.drain_timeout_s
        if settings.database.url is None:
            url = stack.enter_context(embedded_postgres(data_dir, wait_s=wait_s))
            settings = settings.with_overrides(database=_with_url(settings.database, url))
            embedded = True
        if settings.redis.url is None:
            url = stack.enter_context(
                embedded_redis(data_dir, wait_s=wait_s, probe_s=settings.redis.connect_timeout_s)
            )
            settings = settings.with_overrides(redis=_with_url(settings.redis, url))
        if embedded and settings.stripe.secret_key is None:
            # Development on embedded defaults: orders pay on a local Stripe, whose
            # signed webhooks come back to this service.
            url = stack.enter_context(local_stripe(wait_s=wait_s))
            stripe = dataclasses.replace(
                settings.stripe,
                secret_key=LOCAL_STRIPE_KEY,
                webhook_secret=LOCAL_WEBHOOK_SECRET,
                api_base=url,
            )
            settings = settings.with_overrides(stripe=stripe)
            webhook = f"http://{settings.host}:{settings.port}/v1/webhooks/stripe"
            register_webhook(url, webhook, LOCAL_WEBHOOK_SECRET, wait_s=wait_s)
        if embedded and not (settings.ses.enabled or settings.smtp.enabled):
            # Development on embedded defaults: email goes to a local catcher
            # (`lomash mail` lists it); SMS is a log line.
            url = stack.enter_context(mail_catcher(data_dir / "mail"))
            settings = settings.with_overrides(smtp=dataclasses.replace(settings.smtp, url=url))
        migrations = MIGRATIONS_DIR if (arguments.migrate or embedded) else None
        on_ready = None
        if embedded and arguments.fd is None:
            # `make run`: a development admin token, and where everything is, once ready.
            if settings.admin_token is None:
                settings = settings.with_overrides(admin_token=secrets.token_urlsafe(18))
            stack.callback(forget_env_file, data_dir)
            on_ready = partial(announce, settings, data_dir)
        if settings.workers > 1 and arguments.fd is None:
            if migrations is not None:
                assert settings.database.url is not None
                trio_asyncio.run(migrate_up, settings.database.url, migrations)
            if arguments.seed:
                assert settings.database.url is not None
                trio_asyncio.run(load_seed, settings.database.url)
            environment = {
                **os.environ,
                "LOMASH_DATABASE_URL": settings.database.url or "",
                "LOMASH_REDIS_URL": settings.redis.url or "",
                **(
                    {
                        "LOMASH_STRIPE_SECRET_KEY": settings.stripe.secret_key,
                        "LOMASH_STRIPE_WEBHOOK_SECRET": settings.stripe.webhook_secret or "",
                        "LOMASH_STRIPE_API_BASE": settings.stripe.api_base,
                    }
                    if settings.stripe.secret_key is not None
                    else {}
                ),
                **({"LOMASH_SMTP_URL": settings.smtp.url} if settings.smtp.url else {}),
                **({"LOMASH_ADMIN_TOKEN": settings.admin_token} if settings.admin_token else {}),
            }
            if on_ready is not None:
                on_ready([f"http://{_bind(settings)}"])
            return trio.run(partial(run_workers, settings, environment, module=launcher.module))
        bind = f"fd://{arguments.fd}" if arguments.fd is not None else _bind(settings)
        seed = arguments.seed and arguments.fd is None  # workers: the parent seeded
        status: int = trio.run(
            partial(
                serve,
                settings,
                bind=bind,
                migrations=migrations,
                seed=seed,
                extensions=launcher.extensions,
                on_ready=on_ready,
            )
        )
        return status


def _with_url[S: (DatabaseSettings, RedisSettings)](section: S, url: str) -> S:
    return dataclasses.replace(section, url=url)


def _bind(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.port}"


async def _migrate(settings: Settings, action: str, steps: int) -> None:
    """One ``lomash migrate`` action, with this process's timeouts (LOMASH_*)."""
    url = settings.database.url
    assert url is not None
    cleanup_s = settings.cleanup_timeout_s
    connect_s = settings.database.connect_timeout_s
    if action == "up":
        applied = await migrate_up(url, cleanup_s=cleanup_s, connect_timeout_s=connect_s)
        print(f"applied: {[m.version for m in applied] or 'nothing pending'}")
    elif action == "down":
        rolled_back = await migrate_down(
            url, steps=steps, cleanup_s=cleanup_s, connect_timeout_s=connect_s
        )
        print(f"rolled back: {[m.version for m in rolled_back] or 'nothing applied'}")
    else:
        for row in await migration_status(url, cleanup_s=cleanup_s, connect_timeout_s=connect_s):
            mark = "applied" if row.applied else "pending"
            print(f"{row.version:04d} {row.name:<40} {mark}")


def _mail(settings: Settings, limit: int) -> int:
    folder = Path(settings.data_dir) / "mail"
    found = caught(folder, limit=max(1, limit))
    if not found:
        print(f"no email caught yet in {folder} (make run keeps it there)")
    for mail in found:
        print(
            f"--- {mail.path.name}\nFrom: {mail.sender}\nTo: {mail.to}\nSubject: {mail.subject}\n"
        )
        print(mail.text.rstrip() + "\n")
    return 0


def root_causes(error: BaseException) -> Iterator[BaseException]:
    """What really happened: the leaves of exception groups, and for a child that
    failed to start, the error it failed with."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from root_causes(inner)
    elif isinstance(error, ChildStartFailed) and error.__cause__ is not None:
        yield from root_causes(error.__cause__)
    else:
        yield error


def describe(error: BaseException, *, address: str | None = None) -> str:
    """One line for a person: the port in use, the missing job, the refused URL."""
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        where = f"{address} is" if address else "the address is"
        return f"{where} already in use: another process listens there (--port, LOMASH_PORT)"
    if isinstance(error, LomashError):
        return error.message
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class Launcher:
    """Which module runs the command (worker processes run the same one) and what it
    adds to the tree."""

    module: str = "service"
    extensions: Sequence[Extension] = ()


def main(argv: Sequence[str] | None = None, *, launcher: Launcher | None = None) -> int:
    """The ``lomash`` command; a launcher module (the tests' one) may add extensions."""
    launcher = launcher or Launcher()
    arguments = _parser().parse_args(argv)
    environ: Mapping[str, str] = os.environ
    env_file = None
    if arguments.command in ("migrate", "dlq", "config"):
        # Beside `make run`: its embedded servers, unless URLs are set.
        environ, env_file = environment_with_env_file(os.environ)
    try:
        settings = _settings(arguments, environ)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_format, settings.log_level)
    try:
        environ_note(env_file)
        if arguments.command == "config":
            return print_config(settings, os.environ)
        if arguments.command == "migrate":
            if arguments.action == "check":
                return migrate_check()
            if settings.database.url is None:
                print(
                    "configuration error: LOMASH_DATABASE_URL is not set (and no make run "
                    "is serving: start one, or set the URL)",
                    file=sys.stderr,
                )
                return EXIT_CONFIG
            trio_asyncio.run(_migrate, settings, arguments.action, arguments.steps)
            return 0
        if arguments.command == "smoke":
            try:
                run_smoke(
                    arguments.url,
                    showroom=arguments.showroom,
                    within_s=arguments.within,
                    metrics_token=arguments.metrics_token,
                )
            except SmokeFailed as failed:
                print(f"FAILED  {failed}", file=sys.stderr)
                return 1
            print("smoke test passed")
            return 0
        if arguments.command == "chaos":
            from chaos._cli import chaos_command

            return chaos_command(arguments)
        if arguments.command == "mail":
            return _mail(settings, arguments.limit)
        if arguments.command == "dlq":
            if settings.redis.url is None:
                print(
                    "configuration error: LOMASH_REDIS_URL is not set (and no make run "
                    "is serving: start one, or set the URL)",
                    file=sys.stderr,
                )
                return EXIT_CONFIG
            status: int = trio_asyncio.run(dlq, settings, arguments)
            return status
        return _serve(settings, arguments, launcher)
    except BrokenPipeError:  # `lomash config | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (EmbeddedError, LomashError, OSError, BaseExceptionGroup) as error:
        causes = list(root_causes(error))
        if not all(isinstance(c, EmbeddedError | LomashError | OSError) for c in causes):
            raise  # a bug: its traceback is what helps
        address = _bind(settings) if arguments.command == "serve" else None
        for cause in causes:
            line = describe(cause, address=address)
            print(f"error: {line}", file=sys.stderr)
            log.error("fatal_error", error_type=type(cause).__name__, error=line)
        return 1
