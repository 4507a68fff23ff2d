"""``make run``'s mail catcher: the SMTP adapter delivers to it, ``python -m service
mail`` lists what it kept."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from adapters import Email, SmtpEmail
from config import SmtpSettings
from devservers import caught, mail_catcher

REPO = Path(__file__).resolve().parent.parent


async def test_the_catcher_keeps_an_email_and_the_mail_command_lists_it(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    with mail_catcher(folder) as url:
        smtp = SmtpEmail(SmtpSettings(url=url, timeout_s=5.0), sender="Lomash <a@lomash.test>")
        with trio.fail_after(10):
            await smtp.send(
                Email("ada@example.com", "Your booking LW-1", "See you soon", "<p>x</p>")
            )
    [mail] = caught(folder)
    assert (mail.to, mail.subject, mail.text.strip()) == (
        "ada@example.com",
        "Your booking LW-1",
        "See you soon",
    )
    with trio.fail_after(60):
        shown = await trio.run_process(
            [sys.executable, "-m", "service", "mail"],
            cwd=REPO,
            env={"LOMASH_DATA_DIR": str(tmp_path), "PATH": ""},
            capture_stdout=True,
        )
    assert b"Subject: Your booking LW-1" in shown.stdout
    assert b"See you soon" in shown.stdout
