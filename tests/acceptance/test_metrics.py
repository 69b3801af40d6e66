"""`/metrics` of a real worker, read with prometheus-client's own parser."""

from __future__ import annotations

from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.mail.enqueue import enqueue_email
from tests.conftest import count
from tests.workers import get, http_port, spawn, wait_until

IDLE_JOBS = """
SELECT procrastinate_defer_jobs_v1(array_agg(
    ROW('idle', 'test.block', 0, NULL, NULL, '{}'::jsonb, now() - interval '10 minutes')
    ::procrastinate_job_to_defer_v1))
  FROM generate_series(1, 3)
"""


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def test_metrics_show_the_queue_the_work_and_the_emails(
    database_url: str, smtp: Sink, tmp_path: Path
) -> None:
    with session_factory(database_url)() as session, session.begin():
        for n in range(2):
            enqueue_email(
                session, to=f"u{n}@example.com", template="welcome", context={"username": "u"}
            )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(IDLE_JOBS)  # a queue no worker serves, waiting for 10 minutes
        conn.execute(  # deliverability: one complaint, one suppressed address
            "INSERT INTO suppressions (address, reason, source)"
            " VALUES ('a@x.org', 'complaint', 't');"
            "INSERT INTO feedback_events (provider, event_id, kind, address, raw)"
            " VALUES ('webhook', 'e1', 'complaint', 'a@x.org', '{}')"
        )
    port = http_port()
    worker = spawn("worker", "--queues", "email", log=tmp_path / "w.log", http_port=port)
    try:
        sent = "SELECT count(*) FROM email_messages WHERE status = 'sent'"
        wait_until(lambda: count(database_url, sent) == 2, "both emails to be sent")
        # The ledger commits before the job ends: wait for the jobs themselves.
        done = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        wait_until(lambda: count(database_url, done) == 2, "both jobs to succeed")
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        health = get(f"http://127.0.0.1:{port}/healthz")
        missing = get(f"http://127.0.0.1:{port}/nope")
    finally:
        worker.terminate()
        worker.wait(timeout=120)

    metrics = _samples(body)
    assert metrics[("jobs_database_up", ())] == 1
    assert metrics[("jobs_queue_jobs", (("queue", "idle"), ("status", "todo")))] == 3
    assert metrics[("jobs_queue_due_jobs", (("queue", "idle"),))] == 3
    assert metrics[("jobs_queue_oldest_due_seconds", (("queue", "idle"),))] >= 600
    assert metrics[("jobs_workers_alive", ())] >= 1
    assert metrics[("jobs_emails_pending", ())] == 0
    # a known queue and status with no job shows 0, not "no data"
    for queue, state in (("email", "doing"), ("email", "failed"), ("default", "failed")):
        assert metrics[("jobs_queue_jobs", (("queue", queue), ("status", state)))] == 0
    assert metrics[("jobs_queue_due_jobs", (("queue", "email"),))] == 0
    assert metrics[("jobs_queue_oldest_due_seconds", (("queue", "email"),))] == 0
    pruned = ("jobs_finished_total", (("outcome", "failed"), ("task", "maintenance.prune")))
    assert metrics[pruned] == 0
    finished = ("jobs_finished_total", (("outcome", "succeeded"), ("task", "email.deliver")))
    assert metrics[finished] == 2
    assert metrics[("jobs_emails_total", (("outcome", "sent"),))] == 2
    assert metrics[("jobs_emails_total", (("outcome", "failed"),))] == 0
    assert metrics[("jobs_email_delivery_seconds_count", ())] == 2
    assert ("jobs_smtp_connections_open", ()) in metrics
    assert metrics[("process_resident_memory_bytes", ())] > 0
    assert metrics[("jobs_suppressed_addresses", (("reason", "complaint"),))] == 1
    complaints = (("campaign", "unmatched"), ("kind", "complaint"))
    assert metrics[("jobs_feedback_events", complaints)] == 1
    assert metrics[("jobs_promotion_runs_paused", ())] == 0
    assert health == (200, "ok\n")
    assert missing[0] == 404


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_outcomes_are_counted_per_job_and_per_email(database_url: str, smtp: Sink) -> None:
    from jobs.worker.run import run_worker
    from tests.conftest import faults

    faults(smtp).data_replies.append("421 4.3.0 try later")
    names = (
        ("jobs_finished_total", {"task": "email.deliver", "outcome": "retried"}),
        ("jobs_finished_total", {"task": "email.deliver", "outcome": "succeeded"}),
        ("jobs_emails_total", {"outcome": "deferred"}),
        ("jobs_emails_total", {"outcome": "sent"}),
    )
    before = [_sample(name, **labels) for name, labels in names]
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="a@example.com", template="welcome", context={"username": "a"})
    await run_worker(drain=True)
    with psycopg.connect(database_url, autocommit=True) as conn:  # the retry is due now
        conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")
    await run_worker(drain=True)
    after = [_sample(name, **labels) for name, labels in names]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 1]


# The first batch that records an email `sent` fails at its commit (a deferred trigger);
# a sequence, which no rollback undoes, lets only the first one fail.
FAIL_FIRST_COMMIT = """
CREATE SEQUENCE refused_commits;
CREATE FUNCTION refuse_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('refused_commits') = 1 THEN
        RAISE EXCEPTION 'commit refused by the test';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_first_commit AFTER UPDATE ON email_messages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status = 'sent')
    EXECUTE FUNCTION refuse_first_commit();
"""


async def test_an_email_whose_batch_commit_failed_is_counted_once(
    database_url: str, smtp: Sink
) -> None:
    from jobs.worker.run import run_worker

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(FAIL_FIRST_COMMIT)
    sent_before = _sample("jobs_emails_total", outcome="sent")
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="a@example.com", template="welcome", context={"username": "a"})
    await run_worker(drain=True)  # accepted by the server, then the commit fails
    assert count(database_url, "SELECT count(*) FROM email_messages WHERE status = 'pending'") == 1
    with psycopg.connect(database_url, autocommit=True) as conn:  # the retry is due now
        conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")
    await run_worker(drain=True)  # the retry finds the journal's entry: recorded, not resent
    assert count(database_url, "SELECT count(*) FROM email_messages WHERE status = 'sent'") == 1
    assert len(smtp.messages) == 1
    assert _sample("jobs_emails_total", outcome="sent") - sent_before == 1
