"""``lomash smoke URL``: the canary's smoke test, run against a deployment before it
takes traffic (the spec's bake window).

In order, each with its own deadline, all within ``--within`` seconds: the process
answers (``/health/live``), it is healthy or degraded (``/health``) and ready
(``/health/ready``), the read routes answer (showrooms, products, availability of the
reserved test showroom), a booking in that showroom is made (201, or 202 while
Postgres is down) and cancelled with its manage token, and ``/metrics`` answers.
One line per check; the first failure stops the run with exit status 1 and says what
was expected; all passed: exit 0.

The booking goes to a showroom kept for this (``--showroom``, default
``smoke-test``): production must have one that customers never see offered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["SmokeFailed", "run_smoke"]

CUSTOMER = {
    "name": "Smoke Test",
    "email": "smoke-test@lomashwood.invalid",
    "phone": "+44 7700 900000",
    "postcode": "SW1A 1AA",
}


class SmokeFailed(Exception):
    """A check failed; the message says which and what it got."""


@dataclass
class Smoke:
    client: httpx.Client
    deadline: float
    say: Callable[[str], None]

    def check(
        self, name: str, method: str, path: str, expect: tuple[int, ...], **options: Any
    ) -> httpx.Response:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SmokeFailed(f"{name}: out of time (the bake window ran out)")
        started = time.perf_counter()
        try:
            answer = self.client.request(method, path, timeout=min(left, 10.0), **options)
        except httpx.HTTPError as error:
            raise SmokeFailed(f"{name}: {method} {path}: {type(error).__name__}: {error}") from None
        ms = (time.perf_counter() - started) * 1000
        if answer.status_code not in expect:
            wanted = " or ".join(str(s) for s in expect)
            raise SmokeFailed(
                f"{name}: {method} {path} answered {answer.status_code}, expected {wanted}: "
                f"{answer.text[:300]}"
            )
        self.say(f"ok  {name:<22} {method} {path} {answer.status_code} ({ms:.0f} ms)")
        return answer


def run_smoke(
    url: str,
    *,
    showroom: str,
    within_s: float,
    metrics_token: str | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Every check in order; ``SmokeFailed`` at the first that fails."""
    with httpx.Client(base_url=url.rstrip("/")) as client:
        smoke = Smoke(client, time.monotonic() + within_s, say)
        smoke.check("alive", "GET", "/health/live", (200,))
        health = smoke.check("healthy", "GET", "/health", (200,)).json()
        if health.get("status") not in ("healthy", "degraded"):
            raise SmokeFailed(f"healthy: /health says {health.get('status')!r}")
        smoke.check("ready", "GET", "/health/ready", (200,))
        showrooms = smoke.check("showrooms", "GET", "/v1/showrooms", (200,)).json()
        if showroom not in {s["id"] for s in showrooms["showrooms"]}:
            raise SmokeFailed(f"showrooms: no test showroom {showroom!r} (--showroom)")
        smoke.check("products", "GET", "/v1/products", (200,))
        availability = smoke.check(
            "availability",
            "GET",
            "/v1/appointments/availability",
            (200,),
            params={"type": "SHOWROOM", "showroom_id": showroom, "category": "KITCHEN"},
        ).json()
        if not availability["slots"]:
            raise SmokeFailed(f"availability: no free slot in {showroom!r} this week")
        slot = availability["slots"][0]
        body = {
            "type": "SHOWROOM",
            "category": "KITCHEN",
            "start": slot["start"],
            "showroom_id": showroom,
            "consultant_id": slot["consultant_id"],
            "customer": CUSTOMER,
            "notes": "smoke test: cancelled at once",
        }
        booking = smoke.check(
            "booking",
            "POST",
            "/v1/appointments",
            (201, 202),
            json=body,
            headers={"Idempotency-Key": f"smoke-{uuid.uuid4()}"},
        ).json()
        if booking["status"] == "CONFIRMED":
            cancelled = smoke.check(
                "cancellation",
                "POST",
                f"/v1/appointments/{booking['id']}/cancel",
                (200,),
                json={"reason": "smoke test"},
                headers={"X-Manage-Token": booking["manage_token"]},
            ).json()
            if cancelled["status"] != "CANCELLED":
                raise SmokeFailed(f"cancellation: the booking is {cancelled['status']}")
        else:  # accepted while Postgres is down: it cannot be cancelled until confirmed
            say(f"note  booking {booking['id']} is PENDING (Postgres down?): cancel it later")
        headers = {} if metrics_token is None else {"Authorization": f"Bearer {metrics_token}"}
        metrics = smoke.check("metrics", "GET", "/metrics", (200,), headers=headers)
        if "lomash_http_requests_total" not in metrics.text:
            raise SmokeFailed("metrics: no lomash_http_requests_total series")
