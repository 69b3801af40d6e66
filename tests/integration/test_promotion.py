"""The promotion fan-out: once per period, resumable, eligible users only, dry runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pytest

from jobs import cli
from jobs.app import app
from jobs.db import async_session_factory, dispose_engines
from jobs.dev.sink import Sink
from jobs.promotions.runs import Summary, open_run, summarize
from jobs.promotions.schedule import latest_tick
from jobs.tasks import PROMOTION_TASK
from tests.conftest import count, drain, faults

SECRET = "test-secret-key-0123456789"
DELIVERY_JOBS = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'email.deliver'"
LEDGER = "SELECT count(*) FROM email_messages"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _promotion_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.settings import get_settings

    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("PROMOTION_CRON", "0 9 * * *")
    monkeypatch.delenv("PROMOTION_CHUNK_SIZE", raising=False)
    get_settings.cache_clear()


def add_users(url: str, active: int, *, inactive: int = 0, unsubscribed: int = 0) -> None:
    """``active`` eligible users (u0..), then inactive (in0..) and unsubscribed (un0..) ones."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO users (email, username) SELECT 'u' || g || '@example.com', 'user' || g"
            " FROM generate_series(0, %s - 1) g",
            (active,),
        )
        conn.execute(
            "INSERT INTO users (email, username, is_active) SELECT 'in' || g || '@example.com',"
            " 'inactive' || g, false FROM generate_series(0, %s - 1) g",
            (inactive,),
        )
        conn.execute(
            "INSERT INTO users (email, username, unsubscribed_at) SELECT 'un' || g ||"
            " '@example.com', 'unsub' || g, now() FROM generate_series(0, %s - 1) g",
            (unsubscribed,),
        )


async def trigger(timestamp: int) -> None:
    """What the periodic deferrer does on a tick: defer the task for that timestamp."""
    async with app.open_async():
        await app.configure_task(PROMOTION_TASK).defer_async(timestamp=timestamp)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` in a fresh event loop, closing the pools opened in it."""

    async def go() -> T:
        try:
            return await coroutine
        finally:
            await dispose_engines()

    return asyncio.run(go())


def drain_all(url: str) -> None:
    """`drain` until no job is left to do: the promotion job defers delivery jobs
    while the worker runs, after it may have stopped looking."""
    while True:
        run(drain())
        if not count(url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'"):
            return


async def _summary(url: str, run_id: int) -> Summary:
    async with async_session_factory(url)() as session:
        return await summarize(session, run_id)


async def _open_run(url: str, period: datetime) -> int:
    async with async_session_factory(url)() as session, session.begin():
        return await open_run(session, 1, period)


def recipients(sink: Sink) -> Counter[str]:
    return Counter(str(m["To"]) for m in faults(sink).parsed())


def test_promote_mails_each_eligible_user_once_with_the_campaign(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 7, inactive=2, unsubscribed=2)
    assert cli.main(["promote"]) == 0
    assert "success_count 7, error_count 0, total_users 7" in capsys.readouterr().out
    assert count(database_url, DELIVERY_JOBS) == 1  # 7 users < one chunk
    drain_all(database_url)
    assert recipients(smtp) == Counter({f"u{n}@example.com": 1 for n in range(7)})
    message = faults(smtp).parsed()[0]
    assert message["Subject"] == "Special Promotion Just For You!"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]  # the part exists
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]  # the part exists
    for part in (text, html):
        assert "Special Offer Today!" in part
        assert "Get 50% off on all products!" in part
        assert "http://localhost:3000/promotions" in part
        assert "Hello user" in part


def test_a_period_runs_once_scheduled_and_manual_runs_are_the_same_run(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 5)
    period = latest_tick("0 9 * * *", datetime.now(UTC))
    # The scheduled trigger: procrastinate defers the task with the tick's timestamp.
    run(trigger(int(period.timestamp())))
    drain_all(database_url)
    assert len(smtp.messages) == 5
    jobs_after_first = count(database_url, DELIVERY_JOBS)
    # A manual run in the same period, and a second trigger: nothing new.
    assert cli.main(["promote"]) == 0
    run(trigger(int(period.timestamp())))
    drain_all(database_url)
    assert "run_id 1," in capsys.readouterr().out
    assert count(database_url, "SELECT count(*) FROM promotion_runs") == 1
    assert count(database_url, DELIVERY_JOBS) == jobs_after_first
    assert len(smtp.messages) == 5
    summary = run(_summary(database_url, 1))
    assert (summary.total_users, summary.queued, summary.sent, summary.failed) == (5, 5, 5, 0)
    assert summary.as_dict()["success_count"] == 5


def test_a_new_period_is_a_new_run(database_url: str, smtp: Sink) -> None:
    add_users(database_url, 3)
    for timestamp in (1_700_000_000, 1_700_086_400):
        run(trigger(timestamp))
    drain_all(database_url)
    assert count(database_url, "SELECT count(*) FROM promotion_runs") == 2
    assert recipients(smtp) == Counter({f"u{n}@example.com": 2 for n in range(3)})


def test_dry_run_counts_recipients_and_writes_nothing(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 4, inactive=1, unsubscribed=1)
    before = count(database_url, LEDGER), count(database_url, DELIVERY_JOBS)
    assert cli.main(["promote", "--dry-run"]) == 0
    assert "default: 4 recipient(s) to queue (dry run: nothing written)" in capsys.readouterr().out
    assert (count(database_url, LEDGER), count(database_url, DELIVERY_JOBS)) == before
    assert count(database_url, "SELECT count(*) FROM promotion_runs") == 0


def test_without_secret_key_a_configured_database_refuses_to_promote(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.settings import get_settings

    add_users(database_url, 2)
    monkeypatch.delenv("SECRET_KEY")
    get_settings.cache_clear()
    assert cli.main(["promote"]) == 2
    assert "SECRET_KEY is not set" in capsys.readouterr().err
    assert count(database_url, LEDGER) == 0


def _blocked_backends(url: str) -> int:
    return count(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'",
    )


def test_a_fan_out_killed_halfway_resumes_without_duplicates_or_gaps(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks 1-2 commit, chunk 3 hangs (a test transaction holds one of its ledger
    keys), the process is SIGKILLed; running again finishes the period exactly."""
    add_users(database_url, 60, inactive=3, unsubscribed=3)
    cron = "0 0 1 1 *"  # one period a year: the period cannot change during the test
    monkeypatch.setenv("PROMOTION_CRON", cron)
    monkeypatch.setenv("PROMOTION_CHUNK_SIZE", "10")
    period = latest_tick(cron, datetime.now(UTC))
    run_id = run(_open_run(database_url, period))
    user_25 = count(database_url, "SELECT id FROM users WHERE email = 'u25@example.com'")
    blocker = psycopg.connect(database_url)
    blocker.execute(
        "INSERT INTO email_messages (idempotency_key, kind, to_address, template)"
        " VALUES (%s, 'blocker', 'x@example.com', 'welcome')",
        (f"promotion:{run_id}:{user_25}",),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "promote"],
        env={**os.environ, "PROMOTION_CRON": cron, "PROMOTION_CHUNK_SIZE": "10"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60  # a safety net, not a timing assertion
        while not _blocked_backends(database_url):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the fan-out never reached chunk 3"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
        if process.stderr is not None:
            process.stderr.close()
    queued = "SELECT queued FROM promotion_runs"
    assert count(database_url, queued) == 20
    assert count(database_url, "SELECT count(*) FROM promotion_runs WHERE finished_at IS NULL") == 1
    assert count(database_url, DELIVERY_JOBS) == 2

    assert cli.main(["promote"]) == 0  # the same period: resumes after user 20
    drain_all(database_url)
    assert count(database_url, queued) == 60
    assert count(database_url, DELIVERY_JOBS) == 6
    assert recipients(smtp) == Counter({f"u{n}@example.com": 1 for n in range(60)})
