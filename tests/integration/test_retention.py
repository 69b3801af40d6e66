"""Retention deletes finished jobs older than JOB_RETENTION_DAYS (and their events), in
batches, and nothing else; the ledger keeps its rows but drops old contexts."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import psycopg
from procrastinate.exceptions import AlreadyEnqueued

from jobs.app import app
from jobs.db import async_session_factory
from jobs.ops.retention import prune
from jobs.tasks.maintenance import prune_old
from tests.conftest import count


def _job(conn: psycopg.Connection, status: str, *events: tuple[str, int]) -> int:
    """A job in ``status`` with ``events`` as (type, days ago)."""
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status, scheduled_at) "
        "VALUES ('default', 'test.noop', %s, CASE WHEN %s = 'todo' THEN now() + interval "
        "'30 days' END) RETURNING id",
        [status, status],
    ).fetchone()
    assert row is not None
    conn.execute("DELETE FROM procrastinate_events WHERE job_id = %s", [row[0]])  # triggers'
    for type_, days in events:
        conn.execute(
            "INSERT INTO procrastinate_events (job_id, type, at) "
            "VALUES (%s, %s, now() - make_interval(days => %s))",
            [row[0], type_, days],
        )
    return int(row[0])


def _seed(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        jobs = {
            "old succeeded": _job(conn, "succeeded", ("deferred", 10), ("succeeded", 10)),
            "old failed": _job(conn, "failed", ("deferred", 9), ("failed", 9)),
            "old cancelled": _job(conn, "cancelled", ("deferred", 8), ("cancelled", 8)),
            "old aborted": _job(conn, "aborted", ("deferred", 8), ("aborted", 8)),
            "recent succeeded": _job(conn, "succeeded", ("deferred", 1), ("succeeded", 1)),
            "retried, recent": _job(
                conn,
                "succeeded",
                ("deferred", 12),
                ("failed", 12),
                ("retried", 1),
                ("succeeded", 1),
            ),
            "old todo": _job(conn, "todo", ("deferred", 10)),
            "old doing": _job(conn, "doing", ("deferred", 10), ("started", 10)),
        }
        conn.execute(
            "INSERT INTO job_recoveries (job_id, recoveries) VALUES (%s, 1), (%s, 1)",
            [jobs["old succeeded"], jobs["recent succeeded"]],
        )
        for key, status, days in (
            ("old sent", "sent", 40),
            ("old failed", "failed", 40),
            ("old pending", "pending", 40),
            ("recent sent", "sent", 2),
        ):
            conn.execute(
                "INSERT INTO email_messages (idempotency_key, kind, to_address, template, "
                "context, status, created_at) VALUES (%s, 'welcome', 'a@example.com', "
                "'welcome', '{\"username\": \"a\"}', %s, now() - make_interval(days => %s))",
                [key, status, days],
            )
    return jobs


def _kept(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        return {int(id_) for (id_,) in conn.execute("SELECT id FROM procrastinate_jobs")}


def _contexts(url: str) -> dict[str, bool]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT idempotency_key, context IS NOT NULL FROM email_messages")
        return {str(key): bool(has) for key, has in rows}


async def test_prune_deletes_only_old_finished_jobs_in_batches(database_url: str) -> None:
    jobs = _seed(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_results (job_id, task_name, status, result, finished_at) VALUES"
            " (900001, 'old', 'succeeded', '1', now() - interval '8 days'),"
            " (900002, 'recent', 'succeeded', '2', now())"
        )
    now = datetime.now(UTC)
    result = await prune(
        async_session_factory(database_url),
        jobs_before=now - timedelta(days=7),
        contexts_before=now - timedelta(days=30),
        batch_size=2,  # several batches, one transaction each
    )
    assert result == {"jobs_deleted": 4, "results_deleted": 1, "contexts_dropped": 2}
    assert count(database_url, "SELECT job_id FROM job_results") == 900002
    assert _kept(database_url) == {
        jobs[name] for name in ("recent succeeded", "retried, recent", "old todo", "old doing")
    }
    orphans = (
        "SELECT count(*) FROM procrastinate_events e WHERE NOT EXISTS "
        "(SELECT 1 FROM procrastinate_jobs j WHERE j.id = e.job_id)"
    )
    assert count(database_url, orphans) == 0
    assert count(database_url, "SELECT count(*) FROM procrastinate_events") == 9
    assert count(database_url, "SELECT job_id FROM job_recoveries") == jobs["recent succeeded"]
    # The ledger keeps every row; only finished rows older than the limit lose their context.
    assert _contexts(database_url) == {
        "old sent": False,
        "old failed": False,
        "old pending": True,
        "recent sent": True,
    }
    again = await prune(
        async_session_factory(database_url),
        jobs_before=now - timedelta(days=7),
        contexts_before=now - timedelta(days=30),
        batch_size=2,
    )
    assert again == {"jobs_deleted": 0, "results_deleted": 0, "contexts_dropped": 0}


async def test_the_periodic_task_applies_the_configured_retention(database_url: str) -> None:
    jobs = _seed(database_url)
    async with app.open_async():
        with contextlib.suppress(AlreadyEnqueued):
            await prune_old.configure().defer_async(timestamp=0)
        await app.run_worker_async(
            queues=["default"], wait=False, install_signal_handlers=False, listen_notify=False
        )
    kept = _kept(database_url)
    assert jobs["old succeeded"] not in kept  # JOB_RETENTION_DAYS defaults to 7
    assert jobs["recent succeeded"] in kept
    assert _contexts(database_url)["old sent"] is False  # LEDGER_CONTEXT_DAYS defaults to 30
