"""The ops page in a real headless browser (Debian's chromium through chromedriver):
it loads with nothing from elsewhere, takes the admin token, shows a dead job this
test made with its attempt history, requeues it, and the job leaves the dead-letter
queue. A screenshot is kept in the test's tmp folder."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from adapters import open_redis
from config import QueuePolicy, RedisSettings
from jobs import JobState, RedisJobQueue
from tests.conftest import fetch
from tests.test_process import BOUND_S, environment, service

__all__ = ["environment"]  # the fixture, used by name below

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
TOKEN = "ops-" + "t" * 32


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER or ""), options=options)


def drive(url: str, shot: Path) -> dict[str, Any]:
    """Load /ops, log in, find the dead job, requeue it; what the page showed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(f"{url}/ops")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        job = wait.until(
            seen.presence_of_element_located((By.CSS_SELECTOR, '[data-job-id="ops-dead"]'))
        )
        history = job.find_element(By.TAG_NAME, "ol").text
        actors = driver.find_element(By.ID, "actors").text
        queues = driver.find_element(By.ID, "queues").text
        notifications = driver.find_element(By.ID, "notifications").text
        health = driver.find_element(By.ID, "health").text
        driver.save_screenshot(str(shot))
        job.find_element(By.CSS_SELECTOR, "button.requeue").click()
        wait.until(
            seen.invisibility_of_element_located((By.CSS_SELECTOR, '[data-job-id="ops-dead"]'))
        )
        console = [entry["message"] for entry in driver.get_log("browser")]
        return {
            "history": history,
            "actors": actors,
            "queues": queues,
            "notifications": notifications,
            "health": health,
            "console": console,
            "requests": driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            ),
        }
    finally:
        driver.quit()


async def test_the_ops_page_shows_and_requeues_a_dead_job(
    environment: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    prefix = f"{environment['LOMASH_REDIS_PREFIX']}{secrets.token_hex(3)}:"
    # This process works on bookings only: a requeued notifications job stays waiting.
    shipped = {
        **environment,
        "LOMASH_REDIS_PREFIX": prefix,
        "LOMASH_ADMIN_TOKEN": TOKEN,
        "LOMASH_JOBS_QUEUES": "bookings",
    }
    settings = RedisSettings(url=redis_url, prefix=prefix)
    async with trio_asyncio.open_loop(), open_redis(settings, cleanup_s=1.0) as cache:
        queue = RedisJobQueue(cache, prefix="jobs", default=QueuePolicy(attempts=1))
        await queue.enqueue("notifications", "email.confirmation", {"to": "x"}, job_id="ops-dead")
        [lease] = await queue.lease("notifications", worker="t", limit=1, wait_s=BOUND_S)
        await queue.fail(lease, error_type="UpstreamError", error_message="SES said 503")
        await fetch(
            environment["LOMASH_DATABASE_URL"],
            """INSERT INTO notification_logs (job_id, kind, reference, channel, provider,
               recipient, status, error, attempted_at)
               VALUES ('ops-log', 'appointment.confirmed', 'OPSREF1', 'sms', 'twilio',
                       '+447700900123', 'FAILED', 'Twilio said 500', now())""",
        )
        async with service(shipped, test_routes=False) as running:
            async with httpx.AsyncClient(base_url=running.url) as client:
                refused = await client.get("/admin/overview")
                page = await client.get("/ops")
            shot = tmp_path / "ops.png"
            with trio.fail_after(BOUND_S * 2):
                shown = await trio.to_thread.run_sync(drive, running.url, shot)
            state = await queue.state("notifications", "ops-dead")
    assert refused.status_code == 401
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "attempt 1: UpstreamError: SES said 503" in shown["history"]
    assert "slot-booker" in shown["actors"]
    assert "notifications" in shown["queues"]
    assert "OPSREF1" in shown["notifications"]
    assert "FAILED: Twilio said 500" in shown["notifications"]
    assert shown["health"].startswith("healthy")
    assert all(name.startswith(running.url) for name in shown["requests"])  # same origin only
    assert not [line for line in shown["console"] if "SEVERE" in line or "Refused" in line]
    assert shot.stat().st_size > 10_000
    assert state is JobState.WAITING  # requeued: out of the dead-letter queue
