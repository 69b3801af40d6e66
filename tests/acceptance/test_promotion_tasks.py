"""The periodic promotion under real workers: two worker processes, a per-second cron."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import psycopg
import pytest

from jobs.dev.sink import Sink
from tests.conftest import count, faults
from tests.integration.test_promotion import SECRET, add_users, drain_all

FINISHED_RUNS = "SELECT count(*) FROM promotion_runs WHERE finished_at IS NOT NULL"


def _worker(url: str, sink: Sink) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "MAIL_SERVER": sink.host,
        "MAIL_PORT": str(sink.port),
        "SECRET_KEY": SECRET,
        "PROMOTION_CRON": "* * * * * *",  # six fields: every second
        "PROMOTION_SCHEDULE_ENABLED": "true",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "worker", "--concurrency", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_two_workers_run_each_period_once_and_mail_each_user_once_per_period(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_users(database_url, 3, inactive=1, unsubscribed=1)
    workers = [_worker(database_url, smtp), _worker(database_url, smtp)]
    try:
        deadline = time.monotonic() + 90  # a safety net, not a timing assertion
        while count(database_url, FINISHED_RUNS) < 3:
            for worker in workers:
                assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            assert time.monotonic() < deadline, "the periodic promotion never ran 3 times"
            time.sleep(0.1)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            status = worker.wait(timeout=60)
            if worker.stderr is not None:
                worker.stderr.close()
            assert status == 0
    # What the workers deferred but had no time to finish: an in-process worker
    # (schedule disabled here) completes it.
    monkeypatch.setenv("SECRET_KEY", SECRET)
    from jobs.settings import get_settings

    get_settings.cache_clear()
    drain_all(database_url)

    with psycopg.connect(database_url) as conn:
        periods = [
            row[0]
            for row in conn.execute(
                "SELECT args->>'timestamp' FROM procrastinate_jobs"
                " WHERE task_name = 'promotion.send_promotion_emails'"
            )
        ]
        statuses = {
            row[0] for row in conn.execute("SELECT DISTINCT status FROM procrastinate_jobs")
        }
    runs = count(database_url, "SELECT count(*) FROM promotion_runs")
    assert len(periods) >= 3
    assert Counter(periods).most_common(1)[0][1] == 1  # one job per period, not one per worker
    assert runs == len(periods)  # one run per period
    assert statuses == {"succeeded"}
    received = Counter(str(m["To"]) for m in faults(smtp).parsed())
    assert received == Counter({f"u{n}@example.com": runs for n in range(3)})
    message_ids = Counter(str(m["Message-ID"]) for m in faults(smtp).parsed())
    assert set(message_ids.values()) == {1}  # a distinct email per (period, user)
