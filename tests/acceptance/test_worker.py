"""Workers close their pooled SMTP connections (QUIT) when they stop, whichever CLI ran them."""

from __future__ import annotations

import os
import subprocess
import sys

from jobs import cli
from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.mail.enqueue import enqueue_email
from tests.conftest import faults


def _enqueue(url: str, n: int) -> None:
    with session_factory(url)() as session, session.begin():
        for i in range(n):
            enqueue_email(
                session, to=f"u{i}@example.com", template="welcome", context={"username": f"u{i}"}
            )


def test_jobs_worker_says_quit_on_every_connection_when_it_stops(
    database_url: str, smtp: Sink
) -> None:
    _enqueue(database_url, 6)
    assert cli.main(["worker", "--drain", "--concurrency", "3"]) == 0
    assert len(smtp.messages) == 6
    assert smtp.handler.connections >= 1
    assert faults(smtp).quits == smtp.handler.connections  # QUIT is answered before exit


def test_procrastinate_worker_says_quit_on_every_connection_when_it_stops(
    database_url: str, smtp: Sink
) -> None:
    _enqueue(database_url, 4)
    result = subprocess.run(
        [sys.executable, "-m", "procrastinate", "--app=jobs.app.app", "worker", "--one-shot"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(smtp.messages) == 4
    assert smtp.handler.connections >= 1
    assert faults(smtp).quits == smtp.handler.connections  # QUIT is answered before exit
