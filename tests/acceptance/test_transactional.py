"""Transactional email (one job per email, committed with the caller's transaction)
delivered in batches by whichever delivery job runs: exactly once, never for a
rolled-back transaction, not held back by a running promotion, and by either CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from jobs.accounts import register_user
from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.mail.delivery import BATCH_SIZE
from jobs.tasks import DELIVER_TASK
from tests.conftest import count, drain, faults, queue_chunk
from tests.workers import spawn, wait_until

PENDING = "SELECT count(*) FROM email_messages WHERE status = 'pending'"
DELIVERIES = f"SELECT count(*) FROM procrastinate_jobs WHERE task_name = '{DELIVER_TASK}'"
UNFINISHED = f"{DELIVERIES} AND status IN ('todo', 'doing')"
NOT_SUCCEEDED = f"{DELIVERIES} AND status <> 'succeeded'"


def _recipients(sink: Sink) -> Counter[str]:
    return Counter(str(message["To"]) for message in faults(sink).parsed())


def _sign_up(url: str, emails: list[str]) -> None:
    """One committed transaction per address."""
    sessions = session_factory(url)
    for email in emails:
        with sessions() as session, session.begin():
            register_user(session, email=email, username=email.split("@")[0])


@pytest.fixture
def workers(
    database_url: str, smtp: Sink, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two `jobs worker` processes on the email queue; stopped (SIGTERM) afterwards."""
    started = [
        spawn("worker", "--queues", "email", "--concurrency", "2", log=tmp_path / f"worker{n}.log")
        for n in range(2)
    ]
    yield started
    for worker in started:
        worker.send_signal(signal.SIGTERM)
    for worker in started:
        assert worker.wait(timeout=120) == 0


def test_concurrent_sign_ups_each_get_exactly_one_welcome_email(
    database_url: str, smtp: Sink, workers: list[subprocess.Popen[bytes]]
) -> None:
    """4 threads x 500 sign-ups while 2 workers deliver; every 10th transaction rolls back."""
    committed: list[str] = []
    rolled_back: list[str] = []
    sessions = session_factory(database_url)

    def client(n: int) -> None:
        for i in range(500):
            email = f"c{n}-{i}@example.com"
            with sessions() as session:
                register_user(session, email=email, username=f"c{n}-{i}")
                if i % 10 == 9:
                    session.rollback()
                    rolled_back.append(email)
                else:
                    session.commit()
                    committed.append(email)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: count(database_url, UNFINISHED) == 0, "every job to finish", timeout=240)

    assert len(committed) == 1800
    assert _recipients(smtp) == Counter(committed)  # each exactly once, none rolled back
    assert not set(rolled_back) & set(_recipients(smtp))
    message_ids = [str(message["Message-ID"]) for message in faults(smtp).parsed()]
    assert len(set(message_ids)) == len(message_ids)
    assert count(database_url, PENDING) == 0
    assert count(database_url, NOT_SUCCEEDED) == 0  # every one-email job ends succeeded


async def test_mail_committed_while_no_worker_runs_is_delivered_when_one_starts(
    database_url: str, smtp: Sink
) -> None:
    emails = [f"early{i}@example.com" for i in range(30)]
    _sign_up(database_url, emails)
    assert count(database_url, f"{DELIVERIES} AND status = 'todo'") == 30
    assert smtp.messages == []

    await drain()

    assert _recipients(smtp) == Counter(emails)
    assert count(database_url, PENDING) == 0
    assert count(database_url, NOT_SUCCEEDED) == 0


def test_a_running_promotion_holds_a_welcome_email_back_by_one_batch_at_most(
    database_url: str, smtp: Sink, tmp_path: Path
) -> None:
    """20,000 promotion emails in chunks of 2,000 are being sent when a user signs up:
    the welcome email overtakes the chunks (whose jobs would otherwise hold both
    worker slots for thousands of messages), waiting only for the batches in flight."""
    concurrency = 2
    for chunk in range(10):
        queue_chunk(database_url, 2000, offset=chunk * 2000, key="promo")
    worker = spawn(
        "worker", "--queues", "email", "--concurrency", str(concurrency), log=tmp_path / "w.log"
    )
    try:
        wait_until(lambda: len(smtp.messages) >= 300, "the promotion to be under way")
        _sign_up(database_url, ["newcomer@example.com"])
        position_at_commit = len(smtp.messages)
        wait_until(
            lambda: "newcomer@example.com" in _recipients(smtp), "the welcome email", timeout=120
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0
    order = [str(message["To"]) for message in faults(smtp).parsed()]
    overtaken_by = order.index("newcomer@example.com") - position_at_commit
    # the batches every running job had in flight, then (at most) the welcome's own batch
    assert overtaken_by < (concurrency + 1) * BATCH_SIZE, overtaken_by
    assert count(database_url, PENDING) > 0  # the promotion was still being sent


def test_the_plain_procrastinate_worker_delivers_transactional_mail(
    database_url: str, smtp: Sink
) -> None:
    emails = [f"plain{i}@example.com" for i in range(20)]
    _sign_up(database_url, emails)
    result = subprocess.run(
        [sys.executable, "-m", "procrastinate", "--app=jobs.app.app", "worker", "--one-shot"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _recipients(smtp) == Counter(emails)
    assert count(database_url, PENDING) == 0
    assert count(database_url, NOT_SUCCEEDED) == 0


async def test_a_taken_email_deferred_by_the_server_stays_with_its_own_job(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever job takes the others, a 4xx for one of them neither fails it for good
    nor retries the taker: that email's own job retries it, up to its own last attempt."""
    monkeypatch.setenv("MAIL_MAX_ATTEMPTS", "2")
    faults(smtp).refuse["busy@example.com"] = "450 4.2.0 mailbox busy, try again later"
    others = [f"fine{i}@example.com" for i in range(6)]
    _sign_up(database_url, [*others[:3], "busy@example.com", *others[3:]])

    await drain()

    assert _recipients(smtp) == Counter(others)  # once each
    with session_factory(database_url)() as session:
        jobs = session.execute(
            text(
                "SELECT m.to_address, j.status::text, m.status::text, m.failure_kind, m.attempts"
                " FROM procrastinate_jobs j"
                " JOIN email_messages m ON m.id = CAST(j.args -> 'message_ids' ->> 0 AS bigint)"
            )
        ).all()
    outcome = {row[0]: row[1:] for row in jobs}
    busy_job, busy_status, kind, attempts = outcome.pop("busy@example.com")
    assert (busy_job, busy_status, kind) == ("failed", "failed", "transient_exhausted")
    assert attempts >= 2  # its own two attempts (and perhaps one by a taker before them)
    assert {row[:2] for row in outcome.values()} == {("succeeded", "sent")}
