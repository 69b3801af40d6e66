"""The `jobs` command: worker --drain, demo, and errors an operator can act on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import cli
from jobs.db import session_factory
from jobs.email import enqueue_email
from jobs.sink import Sink
from tests.conftest import count


def test_worker_drain_processes_due_jobs_and_exits_zero(database_url: str, smtp: Sink) -> None:
    with session_factory(database_url)() as session, session.begin():
        for n in range(3):
            enqueue_email(
                session, to=f"u{n}@example.com", template="welcome", context={"username": f"u{n}"}
            )
    assert cli.main(["worker", "--drain", "--queues", "email", "--concurrency", "2"]) == 0
    assert len(smtp.messages) == 3
    assert count(database_url, "SELECT count(*) FROM email_messages WHERE status = 'sent'") == 3


def test_procrastinate_cli_can_load_the_app(database_url: str, smtp: Sink) -> None:
    """`procrastinate --app=jobs.app.app worker` is the other way to run a worker."""
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="p@example.com", template="welcome", context={"username": "p"})
    result = subprocess.run(
        [sys.executable, "-m", "procrastinate", "--app=jobs.app.app", "worker", "--one-shot"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(smtp.messages) == 1


def test_unreachable_database_is_one_line_naming_host_and_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@127.0.0.1:1/app")
    get_settings.cache_clear()
    try:
        assert cli.main(["migrate"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err.startswith("jobs: error: cannot connect to PostgreSQL at 127.0.0.1:1")
    assert len(err.splitlines()) == 1
    assert "s3cret" not in err


def test_demo_runs_twice_without_duplicates(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "JOBS_DATA_DIR": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-m", "jobs.cli", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert "users created this run : 3" in runs[0].stdout
    assert "emails delivered now   : 3" in runs[0].stdout
    assert "users created this run : 0 (already there: 3)" in runs[1].stdout
    assert "emails delivered now   : 0" in runs[1].stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 3
    assert count(database_url, "SELECT count(*) FROM users WHERE username = 'mallory'") == 0
    assert count(database_url, "SELECT count(*) FROM email_messages") == 3
