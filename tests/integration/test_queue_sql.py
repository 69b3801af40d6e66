"""What `jobs.db.queue_sql` relies on in procrastinate's schema, read off a migrated database.

The schema is frozen by migration 0001; these tests fail when a procrastinate
upgrade changes a type, function, column or enum label that the named queries use.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from jobs.db import queue_sql, session_factory
from jobs.mail.enqueue import job_params
from jobs.ops.queries import OUTCOME_NAMES
from jobs.results.state import JOB_STATES
from jobs.tasks import DELIVER_TASK, EMAIL_QUEUE, TRANSACTIONAL_PRIORITY

NAMES = sorted(name for name in vars(queue_sql) if name.isupper() and name[0] != "_")

# DEFER_NEW_MESSAGE is a CTE: run after a `message` CTE, as its callers do.
DEFER = f"WITH message AS (SELECT CAST(:message_id AS bigint) AS id), {queue_sql.DEFER_NEW_MESSAGE}"


def _sql(name: str) -> str:
    query = getattr(queue_sql, name)
    if name == "DEFER_NEW_MESSAGE":
        return f"{DEFER} SELECT job_id FROM job"
    assert isinstance(query, TextClause), name
    return query.text


def _catalog(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.mark.parametrize("scheduled_at", [None, datetime(2030, 1, 1, tzinfo=UTC)])
def test_defer_new_message_makes_the_job_procrastinates_defer_makes(
    database_url: str, scheduled_at: datetime | None
) -> None:
    """DEFER_NEW_MESSAGE inserts the job row itself: the row, its events and its
    notification are those of procrastinate_defer_jobs_v1 with the same job."""
    params = {**PLAN_PARAMS["DEFER_NEW_MESSAGE"], "message_id": 7, "scheduled_at": scheduled_at}
    ours_sql = f"{DEFER} SELECT job_id FROM job"
    theirs_sql = (
        "SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(%(queue)s, %(task)s, %(priority)s,"
        " NULL, NULL, jsonb_build_object('message_ids', jsonb_build_array(%(message_id)s)),"
        " %(scheduled_at)s)::procrastinate_job_to_defer_v1]))[1]"
    )
    made = {}
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN procrastinate_any_queue_v1")
        with session_factory(database_url)() as session, session.begin():
            ours = session.execute(text(ours_sql), params).scalar_one()
            driver = session.connection().connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            [theirs] = driver.execute(theirs_sql, params).fetchall()[0]
            for name, job_id in (("ours", ours), ("theirs", theirs)):
                row = session.execute(
                    text("SELECT to_jsonb(j) - 'id' FROM procrastinate_jobs j WHERE id = :id"),
                    {"id": job_id},
                ).scalar_one()
                events = session.scalars(
                    text("SELECT type::text FROM procrastinate_events WHERE job_id = :id"),
                    {"id": job_id},
                ).all()
                made[name] = (row, sorted(events))
        assert made["ours"] == made["theirs"]
        assert made["ours"][0]["status"] == "todo"
        notified = [json.loads(n.payload) for n in listener.notifies(timeout=10, stop_after=2)]
    assert notified == [
        {"type": "job_inserted", "job_id": ours},
        {"type": "job_inserted", "job_id": theirs},
    ]


# Every procrastinate function the named queries call: signature -> return type.
FUNCTIONS = {
    "procrastinate_retry_job_v2(bigint, timestamp with time zone, integer,"
    " character varying, character varying)": "void",
    "procrastinate_finish_job_v1(bigint, procrastinate_job_status, boolean)": "void",
    "procrastinate_cancel_job_v1(bigint, boolean, boolean)": "bigint",
}


def test_the_functions_called_are_the_ones_pinned() -> None:
    called = {
        match
        for name in NAMES
        for match in re.findall(r"\b(procrastinate_\w+)\s*\(", _sql(name))
        if not match.startswith(("procrastinate_jobs", "procrastinate_events"))
    }
    assert called == {signature.split("(")[0] for signature in FUNCTIONS}


@pytest.mark.parametrize("signature", FUNCTIONS)
def test_function_exists_with_the_arguments_used(database_url: str, signature: str) -> None:
    name = signature.split("(")[0]
    [(found, returns, overloads)] = _catalog(
        database_url,
        "SELECT to_regprocedure(%s)::text, pg_get_function_result(to_regprocedure(%s)),"
        " (SELECT count(*) FROM pg_proc WHERE proname = %s)",
        signature,
        signature,
        name,
    )
    assert found is not None, f"no function {signature}"
    assert returns == FUNCTIONS[signature]
    assert overloads == 1  # the call cannot resolve to another overload


# The columns the named queries read or write, with their types.
COLUMNS = {
    "procrastinate_jobs": {
        "id": "bigint",
        "queue_name": "character varying(128)",
        "task_name": "character varying(128)",
        "status": "procrastinate_job_status",
        "args": "jsonb",
        "scheduled_at": "timestamp with time zone",
        "attempts": "integer",
        "priority": "integer",
        "lock": "text",
        "abort_requested": "boolean",
        "queueing_lock": "text",
        "worker_id": "bigint",
    },
    "procrastinate_events": {
        "id": "bigint",
        "job_id": "bigint",
        "type": "procrastinate_job_event_type",
        "at": "timestamp with time zone",
    },
    "procrastinate_workers": {"id": "bigint", "last_heartbeat": "timestamp with time zone"},
}


@pytest.mark.parametrize("table", COLUMNS)
def test_columns_read(database_url: str, table: str) -> None:
    columns = dict(
        _catalog(
            database_url,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
            table,
        )
    )
    assert {name: columns.get(name) for name in COLUMNS[table]} == COLUMNS[table]


def _labels(url: str, enum: str) -> list[str]:
    return [
        label
        for (label,) in _catalog(
            url,
            "SELECT enumlabel FROM pg_enum WHERE enumtypid = to_regtype(%s) ORDER BY enumsortorder",
            enum,
        )
    ]


def test_job_status_labels(database_url: str) -> None:
    labels = _labels(database_url, "procrastinate_job_status")
    # the statuses the named queries filter on or set
    assert {"todo", "doing", "succeeded", "failed", "cancelled", "aborted"} <= set(labels)
    # READ_RESULT hands any status to jobs.results.state, which maps each one
    assert set(labels) == set(JOB_STATES)


def test_job_event_type_labels(database_url: str) -> None:
    labels = set(_labels(database_url, "procrastinate_job_event_type"))
    # the event types the named queries filter on
    used = {"deferred", "succeeded", "failed", "deferred_for_retry", "cancelled", "aborted"}
    assert used <= labels
    assert set(OUTCOME_NAMES) <= labels


# Harmless parameters for planning each named query.
PLAN_PARAMS: dict[str, dict[str, Any]] = {
    "GAUGES": {"stalled_after": 60.0},
    "OUTCOMES": {},
    "WORKERS": {},
    "STALLED_JOBS": {"stalled_after": 60.0},
    "RETRY_JOB_NOW": {"job_id": 1},
    "RETRY_UNSAVED_JOBS": {"job_ids": [1], "worker_id": 1},
    "FAIL_JOB": {"job_id": 1},
    "FAILED_JOBS": {"queue": None, "task": "t", "since": timedelta(hours=1)},
    "REQUEUE_FAILED_JOB": {"job_id": 1},
    "LOCK_JOB": {"job_id": 1},
    "CANCEL_JOB": {"job_id": 1, "abort": False},
    "DELETE_FINISHED_JOBS": {
        "cutoff": datetime.now(UTC),
        "after_at": datetime.min.replace(tzinfo=UTC),
        "after_id": 0,
        "batch_size": 10,
    },
    "READ_RESULT": {"job_id": 1},
    "DEFER_NEW_MESSAGE": {"message_id": 1, **job_params()},
    "TAKE_TRANSACTIONAL_JOBS": {"limit": 10},
    "START_TAKEN_JOBS": {"job_ids": [1]},
    "FINISH_TAKEN_JOBS": {"job_ids": [1]},
    "JOBS_PAGE": {
        "queue": "q",
        "task": None,
        "status": "failed",
        "age": timedelta(hours=2),
        "before_id": 10,
        "limit": 5,
    },
    "JOB_DETAIL": {"job_id": 1},
    "JOB_EVENTS": {"job_id": 1},
    "JOBS_OF_MESSAGES": {"message_ids": [1, 2]},
    "THROUGHPUT": {},
    "RECORD_WORKER": {"worker_id": 1, "host": "h", "pid": 1, "queues": ["email"]},
}


def test_every_named_query_is_planned_here() -> None:
    assert sorted(PLAN_PARAMS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_named_query_compiles(database_url: str, name: str) -> None:
    """EXPLAIN parses, resolves and plans the statement without running it."""
    with session_factory(database_url)() as session:
        plan = session.execute(text(f"EXPLAIN {_sql(name)}"), PLAN_PARAMS[name]).scalars().all()
    assert plan


def _job(session: Session, job_id: int) -> dict[str, Any]:
    row = session.execute(
        text(
            "SELECT queue_name, task_name, priority, lock, queueing_lock, args, status::text,"
            " scheduled_at, attempts, worker_id FROM procrastinate_jobs WHERE id = :id"
        ),
        {"id": job_id},
    ).one_or_none()
    return {} if row is None else dict(row._mapping)


def _start(session: Session, job_id: int, worker_id: int) -> None:
    session.execute(
        text("UPDATE procrastinate_jobs SET status = 'doing', worker_id = :w WHERE id = :id"),
        {"id": job_id, "w": worker_id},
    )


def test_a_job_through_every_named_query(database_url: str) -> None:
    with session_factory(database_url)() as session, session.begin():
        # defer: each parameter lands in its column
        defer = text(f"{DEFER} SELECT job_id FROM job")
        job_id = session.execute(defer, PLAN_PARAMS["DEFER_NEW_MESSAGE"]).scalar_one()
        job = _job(session, job_id)
        assert {k: job[k] for k in ("queue_name", "task_name", "priority", "lock")} == {
            "queue_name": EMAIL_QUEUE,
            "task_name": DELIVER_TASK,
            "priority": TRANSACTIONAL_PRIORITY,
            "lock": None,
        }
        assert (job["queueing_lock"], job["args"], job["status"], job["scheduled_at"]) == (
            None,
            {"message_ids": [1]},
            "todo",
            None,
        )
        read = session.execute(queue_sql.READ_RESULT, {"job_id": job_id}).one()
        assert (read.job_status, read.job_task, read.status) == ("todo", DELIVER_TASK, None)
        assert session.execute(queue_sql.LOCK_JOB, {"job_id": job_id}).one() == (
            "todo",
            DELIVER_TASK,
            {"message_ids": [1]},
        )
        gauges = {
            (kind, queue, status): value
            for kind, queue, status, value in session.execute(
                queue_sql.GAUGES, {"stalled_after": 60.0}
            )
        }
        assert gauges[("jobs", EMAIL_QUEUE, "todo")] == 1
        assert gauges[("due", EMAIL_QUEUE, None)] == 1
        assert gauges[("workers", None, None)] == 0

        # a worker, silent for an hour, runs it: stalled
        worker_id = session.execute(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat)"
                " VALUES (now() - interval '1 hour') RETURNING id"
            )
        ).scalar_one()
        _start(session, job_id, worker_id)
        [(w_id, _, age, running, host, pid, queues)] = session.execute(queue_sql.WORKERS)
        assert (w_id, running, host, pid, queues) == (worker_id, 1, None, None, None)
        assert age >= 3600
        stalled = session.execute(queue_sql.STALLED_JOBS, {"stalled_after": 60.0}).all()
        assert stalled == [(job_id, DELIVER_TASK, {"message_ids": [1]})]

        session.execute(queue_sql.RETRY_JOB_NOW, {"job_id": job_id})
        job = _job(session, job_id)
        assert (job["status"], job["attempts"]) == ("todo", 1)
        assert job["scheduled_at"] is not None

        # its worker lost the database: the jobs it could not save go back to todo,
        # unless another worker runs them now
        _start(session, job_id, worker_id)
        unsaved = {"job_ids": [job_id], "worker_id": worker_id + 1}
        session.execute(queue_sql.RETRY_UNSAVED_JOBS, unsaved)
        assert _job(session, job_id)["status"] == "doing"
        session.execute(queue_sql.RETRY_UNSAVED_JOBS, {**unsaved, "worker_id": worker_id})
        job = _job(session, job_id)
        assert (job["status"], job["attempts"]) == ("todo", 2)

        _start(session, job_id, worker_id)
        session.execute(queue_sql.FAIL_JOB, {"job_id": job_id})
        assert _job(session, job_id)["status"] == "failed"
        outcomes = {(row.task_name, row.type) for row in session.execute(queue_sql.OUTCOMES)}
        assert outcomes == {(DELIVER_TASK, "failed"), (DELIVER_TASK, "deferred_for_retry")}

        failed = session.execute(
            queue_sql.FAILED_JOBS, {"queue": EMAIL_QUEUE, "task": None, "since": timedelta(hours=1)}
        ).all()
        assert [(row.id, row.queue_name, row.task_name) for row in failed] == [
            (job_id, EMAIL_QUEUE, DELIVER_TASK)
        ]
        assert failed[0].failed_at is not None
        requeued = session.execute(queue_sql.REQUEUE_FAILED_JOB, {"job_id": job_id}).all()
        assert requeued == [(job_id,)]
        job = _job(session, job_id)
        assert (job["status"], job["attempts"]) == ("todo", 0)

        cancelled = session.execute(queue_sql.CANCEL_JOB, {"job_id": job_id, "abort": False})
        assert cancelled.scalar_one() == job_id
        assert _job(session, job_id)["status"] == "cancelled"

        delete = {**PLAN_PARAMS["DELETE_FINISHED_JOBS"], "cutoff": datetime.now(UTC) + timedelta(1)}
        row = session.execute(queue_sql.DELETE_FINISHED_JOBS, delete).one()
        assert row.deleted == 1
        assert row.last_id is not None
        assert _job(session, job_id) == {}
        read = session.execute(queue_sql.READ_RESULT, {"job_id": job_id}).one()
        assert (read.job_status, read.job_task) == (None, None)


def test_taking_a_waiting_transactional_job(database_url: str) -> None:
    """A due one-message job is taken with its pending row; finishing it records the
    events procrastinate would have (started, succeeded) and nothing fetches it again."""
    with session_factory(database_url)() as session, session.begin():
        message_id = session.execute(
            text(
                "INSERT INTO email_messages (idempotency_key, kind, to_address, template)"
                " VALUES ('k', 'welcome', 'a@example.com', 'welcome') RETURNING id"
            )
        ).scalar_one()
        defer = text(f"{DEFER} SELECT job_id FROM job")
        params = {**PLAN_PARAMS["DEFER_NEW_MESSAGE"], "message_id": message_id}
        job_id = session.execute(defer, params).scalar_one()
        taken = session.execute(queue_sql.TAKE_TRANSACTIONAL_JOBS, {"limit": 10}).all()
        assert [tuple(row) for row in taken] == [(message_id, job_id, 1)]
        session.execute(queue_sql.START_TAKEN_JOBS, {"job_ids": [job_id]})
        session.execute(queue_sql.FINISH_TAKEN_JOBS, {"job_ids": [job_id]})
        job = _job(session, job_id)
        assert (job["status"], job["attempts"], job["worker_id"]) == ("succeeded", 1, None)
        events = session.scalars(
            text("SELECT type::text FROM procrastinate_events WHERE job_id = :id ORDER BY id"),
            {"id": job_id},
        ).all()
        assert events == ["deferred", "started", "succeeded"]
        assert session.execute(queue_sql.TAKE_TRANSACTIONAL_JOBS, {"limit": 10}).all() == []


def test_a_take_reads_one_batch_of_a_backlog_the_statistics_never_saw(database_url: str) -> None:
    """A burst of waiting jobs, analyzed while the queue was empty: taking 50 of them
    reads about 50 jobs, not the whole backlog sorted (the take index, migration 0013)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE procrastinate_jobs")
        conn.execute("ANALYZE email_messages")
    with psycopg.connect(database_url) as conn:  # uncommitted: no autoanalyze sees it
        conn.execute(
            "INSERT INTO email_messages (idempotency_key, kind, to_address, template)"
            " SELECT 'k' || g, 'welcome', 'u' || g || '@example.com', 'welcome'"
            " FROM generate_series(1, 10000) g"
        )
        conn.execute(
            "SELECT procrastinate_defer_jobs_v1(array_agg(ROW(%s, %s, %s, NULL, NULL,"
            " jsonb_build_object('message_ids', jsonb_build_array(id)), NULL"
            ")::procrastinate_job_to_defer_v1)) FROM email_messages",
            (EMAIL_QUEUE, DELIVER_TASK, TRANSACTIONAL_PRIORITY),
        )
        take = queue_sql.TAKE_TRANSACTIONAL_JOBS.text.replace(":limit", "50")
        row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {take}").fetchone()
        conn.rollback()
    assert row is not None
    [plan] = row[0]

    def jobs_read(node: dict[str, Any]) -> int:
        own = node["Actual Rows"] if node.get("Relation Name") == "procrastinate_jobs" else 0
        return own + sum(jobs_read(child) for child in node.get("Plans", []))

    assert jobs_read(plan["Plan"]) <= 60


def test_the_take_names_jobs_tasks_own_queue_task_and_priority() -> None:
    """The take writes them out (to match its index's predicate, which the test above
    exercises): they must stay those that `enqueue_email` defers with."""
    take = queue_sql.TAKE_TRANSACTIONAL_JOBS.text
    assert f"j.queue_name = '{EMAIL_QUEUE}'" in take
    assert f"j.task_name = '{DELIVER_TASK}'" in take
    assert f"j.priority >= {TRANSACTIONAL_PRIORITY}\n" in take


def test_the_message_ids_index_is_for_the_delivery_task() -> None:
    """JOBS_OF_MESSAGES names the task of the partial index's predicate (migration 0011)."""
    migration = Path(__file__).parents[2] / "migrations" / "versions" / "0011_web.py"
    assert f"WHERE task_name = '{DELIVER_TASK}'" in migration.read_text()
    assert f"j.task_name = '{DELIVER_TASK}'" in queue_sql.JOBS_OF_MESSAGES.text


def test_browsing_queries_on_a_job(database_url: str) -> None:
    """JOBS_PAGE, JOB_DETAIL, JOB_EVENTS, JOBS_OF_MESSAGES, THROUGHPUT, RECORD_WORKER."""
    with session_factory(database_url)() as session, session.begin():
        defer = text(f"{DEFER} SELECT job_id FROM job")
        params = {**PLAN_PARAMS["DEFER_NEW_MESSAGE"], "message_id": 7}
        job_id = session.execute(defer, params).scalar_one()
        page = {**PLAN_PARAMS["JOBS_PAGE"], "before_id": None, "limit": 10}
        found = session.execute(
            queue_sql.JOBS_PAGE, {**page, "queue": EMAIL_QUEUE, "status": "todo"}
        ).all()
        assert [(r.id, r.task_name, r.status, r.last_event) for r in found] == [
            (job_id, DELIVER_TASK, "todo", "deferred")
        ]
        # each filter excludes it: another queue, status, an id bound, an age it is older than
        for other in ({"queue": "default"}, {"status": "failed"}, {"before_id": job_id}):
            assert session.execute(queue_sql.JOBS_PAGE, {**page, **other}).all() == []
        session.execute(text("UPDATE procrastinate_events SET at = now() - interval '3 hours'"))
        assert session.execute(queue_sql.JOBS_PAGE, {**page, "status": None}).all() == []
        assert session.execute(queue_sql.JOB_DETAIL, {"job_id": job_id}).one().args == {
            "message_ids": [7]
        }
        assert [e.type for e in session.execute(queue_sql.JOB_EVENTS, {"job_id": job_id})] == [
            "deferred"
        ]
        carried = session.execute(queue_sql.JOBS_OF_MESSAGES, {"message_ids": [7, 8]}).all()
        assert sorted(carried) == [(7, job_id), (8, None)]
        session.execute(text("UPDATE procrastinate_jobs SET status = 'doing'"))
        session.execute(queue_sql.FAIL_JOB, {"job_id": job_id})
        [(_minute, queue, task, type_, n)] = session.execute(queue_sql.THROUGHPUT).all()
        assert (queue, task, type_, n) == (EMAIL_QUEUE, DELIVER_TASK, "failed", 1)

        worker_id = session.execute(
            text("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
        ).scalar_one()
        record = {**PLAN_PARAMS["RECORD_WORKER"], "worker_id": worker_id}
        session.execute(queue_sql.RECORD_WORKER, record)
        session.execute(queue_sql.RECORD_WORKER, {**record, "worker_id": worker_id + 1000})
        session.execute(queue_sql.RECORD_WORKER, record)  # the row of a gone worker goes
        rows = session.execute(text("SELECT worker_id FROM worker_info")).scalars().all()
        assert rows == [worker_id]
        [row] = session.execute(queue_sql.WORKERS).all()
        assert (row.host, row.pid, row.queues) == ("h", 1, ["email"])
