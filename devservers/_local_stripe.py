"""A local Stripe for ``make run`` and the tests: localstripe in its own process."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import structlog

from devservers._embedded import EmbeddedError, dies_with_parent

__all__ = ["local_stripe", "register_webhook"]

log = structlog.get_logger("devservers")


@contextmanager
def local_stripe(*, wait_s: float) -> Iterator[str]:
    """Start localstripe on a loopback port of its own; yield its base URL; stop it."""
    try:
        import localstripe  # noqa: F401 (only to say what is missing)
    except ImportError as error:
        raise EmbeddedError(
            "no LOMASH_STRIPE_API_BASE and no local Stripe: pip install 'lomash-wood[embedded]'"
            " or set LOMASH_STRIPE_API_BASE and LOMASH_STRIPE_SECRET_KEY"
        ) from error
    process = subprocess.Popen(
        [sys.executable, "-m", "devservers._stripe_server"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=dies_with_parent(),
    )
    try:
        port = _announced_port(process, wait_s)
        log.info("local_stripe_started", port=port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        log.info("local_stripe_stopped")


def _announced_port(process: subprocess.Popen[str], wait_s: float) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + wait_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(timeout=left):
                line = process.stdout.readline()
                if line.startswith("listening "):
                    return int(line.split()[1])
                if not line:
                    break
    raise EmbeddedError("the local Stripe (localstripe) did not start")


def register_webhook(stripe_url: str, url: str, secret: str, *, wait_s: float) -> None:
    """Point the local Stripe's signed webhooks at ``url`` (localstripe's own API)."""
    answer = httpx.post(
        f"{stripe_url}/_config/webhooks/lomash", data={"url": url, "secret": secret}, timeout=wait_s
    )
    if answer.status_code != 200:
        raise EmbeddedError(f"the local Stripe refused the webhook ({answer.status_code})")
    log.info("local_stripe_webhook", url=url)
