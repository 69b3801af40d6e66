"""The `jobs` command: worker --drain, demo, and errors an operator can act on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from jobs import cli
from jobs.db import session_factory, with_database
from jobs.dev.sink import Sink
from jobs.mail.enqueue import enqueue_email
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


def test_demo_runs_twice_without_duplicates_in_a_database_of_its_own(
    database_url: str, tmp_path: Path
) -> None:
    """The configured database is left alone: its pending mail is not the demo's."""
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="real@example.com", template="welcome", context={"username": "r"})
    demo_db = f"{urlsplit(database_url).path.lstrip('/')}_demo"
    env = {**os.environ, "DATABASE_URL": database_url, "JOBS_DATA_DIR": str(tmp_path)}
    try:
        runs = [
            subprocess.run(
                [sys.executable, "-m", "jobs.cli", "demo", "--database", demo_db],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            for _ in range(2)
        ]
        demo_url = with_database(database_url, demo_db)
        mallory = count(demo_url, "SELECT count(*) FROM users WHERE username = 'mallory'")
        demo_emails = count(demo_url, "SELECT count(*) FROM email_messages")
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{demo_db}" WITH (FORCE)')
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert "users created this run : 3" in runs[0].stdout
    assert "emails delivered now   : 3" in runs[0].stdout
    assert "users created this run : 0 (already there: 3)" in runs[1].stdout
    assert "emails delivered now   : 0" in runs[1].stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 3
    assert (mallory, demo_emails) == (0, 3)
    assert count(database_url, "SELECT count(*) FROM users") == 0
    assert count(database_url, "SELECT count(*) FROM email_messages WHERE status = 'pending'") == 1


# Results -------------------------------------------------------------


async def test_result_command_prints_each_state_with_its_exit_status(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import drain
    from tests.result_tasks import answer, boom, defer

    ok = await defer(answer, value={"sent": 2, "failed": 0})
    failed = await defer(boom, message="SMTP said 550")
    await drain()
    pending = await defer(answer, value=4)
    expected = {
        ok: (0, 'succeeded: {"sent": 2, "failed": 0}'),
        failed: (1, "failed: ValueError: SMTP said 550"),
        pending: (3, "pending"),
        987654: (4, "unknown job"),
    }
    for job_id, (status, line) in expected.items():
        assert cli.main(["result", str(job_id)]) == status
        assert capsys.readouterr().out == line + "\n"


async def test_result_command_json(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.conftest import drain
    from tests.result_tasks import answer, defer

    job_id = await defer(answer, value=["Zoë"])
    await drain()
    assert cli.main(["result", str(job_id), "--json"]) == 0
    answer_ = json.loads(capsys.readouterr().out)
    assert (answer_["job_id"], answer_["state"], answer_["result"], answer_["error"]) == (
        job_id,
        "succeeded",
        ["Zoë"],
        None,
    )


@pytest.mark.parametrize("bad", ["abc", "0", "-3"])
def test_result_command_refuses_a_bad_job_id(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["result", "--", bad])
    assert exited.value.code == 2
    assert "a job id is a positive integer" in capsys.readouterr().err


def test_procrastinate_cli_worker_records_results_too(database_url: str, smtp: Sink) -> None:
    from jobs.results.store import get_result
    from tests.conftest import queue_chunk

    _, job_id = queue_chunk(database_url, 1)
    subprocess.run(
        [sys.executable, "-m", "procrastinate", "--app=jobs.app.app", "worker", "--one-shot"],
        env=os.environ.copy(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert get_result(job_id).value == {"sent": 1, "failed": 0, "suppressed": 0}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {
                "MAIL_SERVER": "smtp.example.com",
                "MAIL_USERNAME": "me",
                "MAIL_PASSWORD": "hunter2-secret",
            },
            "not encrypted",
        ),
        ({"PROMOTION_SCHEDULE_ENABLED": "true"}, "SECRET_KEY is not set"),
    ],
)
def test_worker_refuses_to_start_on_settings_every_job_would_fail_on(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    message: str,
) -> None:
    from jobs.settings import get_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert cli.main(["worker", "--drain"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert message in err
    assert "hunter2-secret" not in err


def test_a_worker_warns_once_that_the_unsubscribe_link_is_not_https(database_url: str) -> None:
    environment = {
        **os.environ,
        "PROMOTION_SCHEDULE_ENABLED": "true",
        "SECRET_KEY": "test-secret-key-0123456789",
        "FRONTEND_URL": "http://shop.example",
    }
    environment.pop("UNSUBSCRIBE_URL", None)
    environment.pop("WEB_BASE_URL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, jobs.cli; sys.exit(jobs.cli.main())",
            "worker",
            "--drain",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "is not https" in line]
    assert len(warnings) == 1, result.stderr
    assert "http://shop.example/unsubscribe" in warnings[0]
