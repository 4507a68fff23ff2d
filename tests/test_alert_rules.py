"""deploy/alerts.yml: valid Prometheus rules, that fire when they should (promtool's
own rule tests: deploy/alerts_test.yml), on series the service really serves."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.test_process import REPO

DEPLOY = REPO / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (.ci/run installs Debian's prometheus)"
)


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", "alerts.yml"], cwd=DEPLOY, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


@needs_promtool
def test_the_alerts_fire_when_they_should() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=DEPLOY, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def rule_metrics() -> set[str]:
    """The lomash_* series the rules' expressions read."""
    text = (DEPLOY / "alerts.yml").read_text()
    expressions = re.findall(r"^\s*expr:\s*(.+)$", text, re.MULTILINE)
    return {name for expr in expressions for name in re.findall(r"\blomash_[a-z_]+", expr)}


def test_the_rules_read_series_by_the_names_the_service_uses() -> None:
    assert rule_metrics() == {
        "lomash_queue_jobs",
        "lomash_breaker_state",
        "lomash_emails_undelivered",
        "lomash_dependency_up",
    }
