"""Failed work by hand: `jobs retry-failed` re-queues failed jobs and resets only the
emails that may safely be sent again; `jobs cancel` stops a job."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from jobs import cli
from jobs.app import app
from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.mail.enqueue import defer_delivery, enqueue_email
from jobs.models import EmailMessage, EmailStatus
from jobs.ops.requeue import parse_duration
from jobs.settings import get_settings
from tests.acceptance.test_recovery import _run_maintenance
from tests.conftest import count, drain, faults

FAILED_JOBS = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'"


def _ledger(url: str) -> dict[str, EmailMessage]:
    with session_factory(url)() as session:
        return {m.to_address: m for m in session.query(EmailMessage)}


def _chunk(url: str, *addresses: str) -> None:
    """One ledger row per address and ONE delivery job for all of them."""
    with session_factory(url)() as session, session.begin():
        rows = [
            EmailMessage(
                idempotency_key=f"test:{address}",
                kind="test",
                to_address=address,
                template="welcome",
                context={"username": address},
            )
            for address in addresses
        ]
        session.add_all(rows)
        session.flush()
        defer_delivery(session, [row.id for row in rows])


async def test_retry_failed_resends_transient_failures_not_permanent_ones(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    faults(smtp).refuse["bad@example.com"] = "550 5.1.1 no such user"
    faults(smtp).data_replies.extend(["421 4.7.0 server busy"] * 50)
    _chunk(database_url, "bad@example.com", "ok@example.com")
    await drain(fast_forward=20)
    rows = _ledger(database_url)
    assert rows["bad@example.com"].status == EmailStatus.FAILED
    assert rows["ok@example.com"].status == EmailStatus.FAILED
    assert (rows["ok@example.com"].last_error or "").startswith("transient, retries exhausted")
    assert count(database_url, FAILED_JOBS) == 1  # exhausted retries fail the job

    assert cli.main(["retry-failed", "--task", "email.deliver", "--dry-run"]) == 0
    assert (
        "would re-queue 1 failed job(s); 1 failed email(s) would go back" in capsys.readouterr().out
    )
    assert count(database_url, FAILED_JOBS) == 1  # a dry run changes nothing
    assert _ledger(database_url)["ok@example.com"].status == EmailStatus.FAILED

    faults(smtp).data_replies.clear()  # the outage is over
    assert cli.main(["retry-failed"]) == 0
    assert "re-queued 1 failed job(s); 1 failed email(s) went back" in capsys.readouterr().out
    await drain()
    rows = _ledger(database_url)
    assert rows["ok@example.com"].status == EmailStatus.SENT
    assert rows["bad@example.com"].status == EmailStatus.FAILED  # 5xx is never retried
    assert [m["To"] for m in faults(smtp).parsed()] == ["ok@example.com"]
    assert count(database_url, FAILED_JOBS) == 0


async def test_emails_of_a_job_whose_worker_kept_dying_are_sent_after_retry(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_MAX_RECOVERIES", "0")
    get_settings.cache_clear()
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="a@example.com", template="welcome", context={"username": "a"})
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL")
    await _run_maintenance(database_url)
    assert _ledger(database_url)["a@example.com"].last_error == "worker died 1 times"

    assert cli.main(["retry-failed", "--queue", "email", "--since", "1h"]) == 0
    await drain()
    assert _ledger(database_url)["a@example.com"].status == EmailStatus.SENT
    assert count(database_url, "SELECT count(*) FROM job_recoveries") == 0  # fresh budget


def test_filters_select_which_failed_jobs_are_requeued(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for queue, task, hours in (
            ("email", "email.deliver", 1),
            ("email", "email.deliver", 30),
            ("default", "other.task", 1),
        ):
            [job_id] = conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, status, attempts) "
                "VALUES (%s, %s, 'failed', 6) RETURNING id",
                [queue, task],
            ).fetchone() or [0]
            conn.execute(
                "INSERT INTO procrastinate_events (job_id, type, at) "
                "VALUES (%s, 'failed', now() - make_interval(hours => %s))",
                [job_id, hours],
            )
    assert cli.main(["retry-failed", "--task", "email.deliver", "--since", "1d"]) == 0
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT task_name, status, attempts FROM procrastinate_jobs ORDER BY id"
        ).fetchall()
    assert rows == [
        ("email.deliver", "todo", 0),  # failed an hour ago: a fresh start
        ("email.deliver", "failed", 6),  # failed 30 hours ago: outside --since
        ("other.task", "failed", 6),  # another task
    ]


def test_cancel_a_waiting_job_fails_its_emails_for_good(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="a@example.com", template="welcome", context={"username": "a"})
    job_id = count(database_url, "SELECT id FROM procrastinate_jobs")
    assert cli.main(["cancel", str(job_id)]) == 0
    assert capsys.readouterr().out.strip() == f"job {job_id}: cancelled"
    row = _ledger(database_url)["a@example.com"]
    assert row.status == EmailStatus.FAILED
    assert row.last_error == f"cancelled: job {job_id} was cancelled by an operator"
    # Not transient: retry-failed leaves it alone.
    assert cli.main(["retry-failed"]) == 0
    assert _ledger(database_url)["a@example.com"].status == EmailStatus.FAILED

    assert cli.main(["cancel", str(job_id)]) == 2
    assert f"job {job_id} is cancelled: only a waiting" in capsys.readouterr().err
    assert cli.main(["cancel", "999999"]) == 2
    assert "there is no job 999999" in capsys.readouterr().err


def test_cancel_a_running_job_requests_its_abort(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        [job_id] = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status) "
            "VALUES ('default', 'test.block', 'doing') RETURNING id"
        ).fetchone() or [0]
    assert cli.main(["cancel", str(job_id)]) == 0
    assert capsys.readouterr().out.strip() == f"job {job_id}: abort requested"
    assert count(database_url, "SELECT count(*) FROM procrastinate_jobs WHERE abort_requested") == 1


async def test_cancelling_a_running_delivery_fails_its_unsent_emails_for_good(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    faults(smtp).stall_mail.append(60)  # the server sits on the first message
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="a@example.com", template="welcome", context={"username": "a"})
    job_id = count(database_url, "SELECT id FROM procrastinate_jobs")
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                wait=False,
                install_signal_handlers=False,
                listen_notify=False,
                abort_job_polling_interval=0.1,
            )
        )
        doing = f"SELECT count(*) FROM procrastinate_jobs WHERE id = {job_id} AND status = 'doing'"
        for _ in range(600):  # at most 30 s for the worker to take the job
            if count(database_url, doing):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # inside the SMTP conversation
        assert cli.main(["cancel", str(job_id)]) == 0
        await asyncio.wait_for(worker, timeout=30)
    assert capsys.readouterr().out.strip() == f"job {job_id}: abort requested"
    status = f"SELECT status::text = 'aborted' FROM procrastinate_jobs WHERE id = {job_id}"
    assert count(database_url, status) == 1  # ended, not retried
    row = _ledger(database_url)["a@example.com"]
    assert (row.status, row.last_error) == (
        EmailStatus.FAILED,
        f"cancelled: job {job_id} was cancelled by an operator",
    )
    assert cli.main(["retry-failed"]) == 0  # an operator's decision is not undone
    assert _ledger(database_url)["a@example.com"].status == EmailStatus.FAILED
    assert smtp.messages == []


def test_durations() -> None:
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("2d").days == 2
    assert parse_duration("1w").days == 7
    for bad in ("", "5", "5x", "h", "1h 30m", "-1h"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def test_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["retry-failed", "--since", "soon"])
    assert exit_.value.code == 2
    assert "invalid duration 'soon'" in capsys.readouterr().err
