"""The queries behind `jobs status` and `/metrics`: queues, workers, rates, ledger, runs.

Every query reads an index made for it (migration 0006): the current backlog
(todo/doing), the failed jobs, and outcome events by time. None of them scans
the old finished jobs, so they stay cheap with millions of those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# One statement, one round trip: what the metrics collector computes per scrape.
_GAUGES = text("""
WITH active AS (
    SELECT queue_name, status::text AS status, count(*) AS n
      FROM procrastinate_jobs WHERE status IN ('todo', 'doing')
     GROUP BY queue_name, status
), failed AS (
    SELECT queue_name, count(*) AS n
      FROM procrastinate_jobs WHERE status = 'failed'
     GROUP BY queue_name
), due AS (
    SELECT queue_name, count(*) AS n, min(scheduled_at) AS oldest_scheduled,
           min(id) FILTER (WHERE scheduled_at IS NULL) AS oldest_unscheduled
      FROM procrastinate_jobs
     WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
     GROUP BY queue_name
)
SELECT 'jobs' AS kind, queue_name AS queue, status, n::float8 AS value FROM active
UNION ALL SELECT 'jobs', queue_name, 'failed', n::float8 FROM failed
UNION ALL SELECT 'due', queue_name, NULL, n::float8 FROM due
UNION ALL
SELECT 'lag', queue_name, NULL, greatest(0, extract(epoch FROM now() - least(
           oldest_scheduled,
           (SELECT min(e.at) FROM procrastinate_events e
             WHERE e.job_id = due.oldest_unscheduled AND e.type = 'deferred'))))::float8
  FROM due
UNION ALL
SELECT 'workers', NULL, NULL, count(*)::float8 FROM procrastinate_workers
 WHERE last_heartbeat >= now() - make_interval(secs => :stalled_after)
UNION ALL
SELECT 'emails_pending', NULL, NULL, count(*)::float8 FROM email_messages
 WHERE status = 'pending'
""")

_OUTCOMES = text("""
SELECT j.queue_name, j.task_name, e.type::text AS type,
       count(*) FILTER (WHERE e.at >= now() - interval '1 hour') AS last_hour,
       count(*) AS last_day
  FROM procrastinate_events e
  -- LIMIT keeps this a primary-key lookup per recent event: the cost follows the
  -- window, never the size of the jobs table
 CROSS JOIN LATERAL (SELECT queue_name, task_name FROM procrastinate_jobs
                      WHERE id = e.job_id LIMIT 1) j
 WHERE e.type IN ('succeeded', 'failed', 'deferred_for_retry')
   AND e.at >= now() - interval '24 hours'
 GROUP BY j.queue_name, j.task_name, e.type
""")

_WORKERS = text("""
SELECT w.id, w.last_heartbeat,
       extract(epoch FROM now() - w.last_heartbeat)::float8 AS age,
       (SELECT count(*) FROM procrastinate_jobs j
         WHERE j.worker_id = w.id AND j.status = 'doing') AS running
  FROM procrastinate_workers w
 ORDER BY w.id
""")

_LEDGER_WINDOWS = text("""
SELECT status, count(*) FILTER (WHERE created_at >= now() - interval '1 hour') AS last_hour,
       count(*) AS last_day
  FROM email_messages WHERE created_at >= now() - interval '24 hours'
 GROUP BY status
""")

_LEDGER_PENDING = text("""
SELECT (SELECT count(*) FROM email_messages WHERE status = 'pending') AS pending,
       (SELECT extract(epoch FROM now() - created_at)::float8 FROM email_messages
         WHERE status = 'pending' ORDER BY id LIMIT 1) AS oldest
""")

WINDOWS = ("1h", "24h")
# procrastinate event type -> the word `jobs status` uses
OUTCOME_NAMES = {"succeeded": "succeeded", "failed": "failed", "deferred_for_retry": "retried"}


@dataclass
class Gauges:
    """The backlog right now; computed at scrape time with one query."""

    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status) -> n
    due: dict[str, int] = field(default_factory=dict)  # queue -> todo jobs due now
    lag: dict[str, float] = field(default_factory=dict)  # queue -> oldest due job's age (s)
    workers_alive: int = 0
    emails_pending: int = 0


def gauges(session: Session, *, stalled_after: float) -> Gauges:
    result = Gauges()
    for kind, queue, status, value in session.execute(_GAUGES, {"stalled_after": stalled_after}):
        if kind == "jobs":
            result.jobs[(queue, status)] = int(value)
        elif kind == "due":
            result.due[queue] = int(value)
        elif kind == "lag":
            result.lag[queue] = float(value)
        elif kind == "workers":
            result.workers_alive = int(value)
        else:
            result.emails_pending = int(value)
    return result


Counts = dict[str, dict[str, int]]  # outcome -> window -> n


def outcomes(session: Session) -> tuple[dict[str, Counts], dict[str, Counts]]:
    """Succeeded / failed / retried over 1 h and 24 h, by queue and by task."""
    by_queue: dict[str, Counts] = {}
    by_task: dict[str, Counts] = {}
    for queue, task, type_, last_hour, last_day in session.execute(_OUTCOMES):
        name = OUTCOME_NAMES[type_]
        for key, table in ((queue, by_queue), (task, by_task)):
            counts = table.setdefault(key, empty_counts())
            counts[name]["1h"] += int(last_hour)
            counts[name]["24h"] += int(last_day)
    return by_queue, by_task


def empty_counts() -> Counts:
    return {name: dict.fromkeys(WINDOWS, 0) for name in OUTCOME_NAMES.values()}


@dataclass
class WorkerRow:
    id: int
    last_heartbeat: datetime
    seconds_since_heartbeat: float
    alive: bool
    running: int


def workers(session: Session, *, stalled_after: float) -> list[WorkerRow]:
    return [
        WorkerRow(int(id_), beat, float(age), float(age) <= stalled_after, int(running))
        for id_, beat, age, running in session.execute(_WORKERS)
    ]


@dataclass
class Ledger:
    pending: int
    oldest_pending_seconds: float | None
    created: dict[str, dict[str, int]]  # window -> status -> n (rows created in the window)


def ledger(session: Session) -> Ledger:
    created: dict[str, dict[str, int]] = {window: {} for window in WINDOWS}
    for status, last_hour, last_day in session.execute(_LEDGER_WINDOWS):
        created["1h"][str(status)] = int(last_hour)
        created["24h"][str(status)] = int(last_day)
    pending, oldest = session.execute(_LEDGER_PENDING).one()
    return Ledger(int(pending), None if oldest is None else float(oldest), created)


_RUNS = text(
    """
    SELECT r.id, c.name AS campaign, r.period, r.total_users, r.queued,
           count(m.id) FILTER (WHERE m.status = 'sent') AS sent,
           count(m.id) FILTER (WHERE m.status = 'failed') AS failed,
           r.started_at, r.finished_at
    FROM (SELECT * FROM promotion_runs ORDER BY id DESC LIMIT :n) AS r
    JOIN campaigns AS c ON c.id = r.campaign_id
    LEFT JOIN email_messages AS m ON m.promotion_run_id = r.id
    GROUP BY r.id, c.name, r.period, r.total_users, r.queued, r.started_at, r.finished_at
    ORDER BY r.id DESC
    """
)


def promotion_runs(session: Session, *, limit: int = 5) -> list[dict[str, Any]]:
    """The latest promotion runs with their counts (sent/failed read off the ledger)."""
    return [dict(row._mapping) for row in session.execute(_RUNS, {"n": limit})]
