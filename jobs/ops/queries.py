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

from jobs.db.queue_sql import GAUGES, OUTCOMES, THROUGHPUT, WORKERS

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
    for kind, queue, status, value in session.execute(GAUGES, {"stalled_after": stalled_after}):
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
    for queue, task, type_, last_hour, last_day in session.execute(OUTCOMES):
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
    host: str | None = None  # None: not started by `jobs worker` (where it runs is unknown)
    pid: int | None = None
    queues: list[str] | None = None

    def serves(self, queue: str) -> bool:
        """Whether it may work ``queue`` (a worker of unknown queues may serve any)."""
        return self.queues is None or queue in self.queues


def workers(session: Session, *, stalled_after: float) -> list[WorkerRow]:
    return [
        WorkerRow(
            int(id_),
            beat,
            float(age),
            float(age) <= stalled_after,
            int(running),
            host,
            None if pid is None else int(pid),
            None if queues is None else list(queues),
        )
        for id_, beat, age, running, host, pid, queues in session.execute(WORKERS)
    ]


def unserved_queues(due: dict[str, int], workers: list[WorkerRow]) -> list[str]:
    """Queues with due jobs that no live worker serves."""
    return sorted(
        queue
        for queue, n in due.items()
        if n > 0 and not any(w.alive and w.serves(queue) for w in workers)
    )


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


# A run's counts are the sums of its counter rows (`jobs.models.PromotionRunCount`,
# kept by triggers): a scrape reads no ledger row, however large the runs.
_RUNS = text(
    """
    SELECT r.id, c.name AS campaign, r.period, r.total_users, r.queued,
           CAST(coalesce(sum(k.sent), 0) AS bigint) AS sent,
           CAST(coalesce(sum(k.failed), 0) AS bigint) AS failed,
           CAST(coalesce(sum(k.bounces), 0) AS bigint) AS bounced,
           CAST(coalesce(sum(k.complaints), 0) AS bigint) AS complaints,
           CAST(coalesce(sum(k.refused), 0) AS bigint) AS refused,
           CASE WHEN r.cancelled_at IS NOT NULL THEN 'cancelled'
                WHEN r.paused_at IS NOT NULL THEN 'paused'
                WHEN r.finished_at IS NOT NULL THEN 'finished' ELSE 'running' END AS state,
           r.started_at, r.finished_at
    FROM (SELECT * FROM promotion_runs ORDER BY id DESC LIMIT :n) AS r
    JOIN campaigns AS c ON c.id = r.campaign_id
    LEFT JOIN promotion_run_counts AS k ON k.run_id = r.id
    GROUP BY r.id, c.name, r.period, r.total_users, r.queued, r.started_at, r.finished_at,
             r.paused_at, r.cancelled_at
    ORDER BY r.id DESC
    """
)


def promotion_runs(session: Session, *, limit: int = 5) -> list[dict[str, Any]]:
    """The latest promotion runs with their counts (from their counter rows), their
    hard-bounce and complaint rates (over sent + refused) and their state."""
    rows = [dict(row._mapping) for row in session.execute(_RUNS, {"n": limit})]
    for row in rows:
        sample = row["sent"] + row["refused"]
        row["bounce_rate"] = _percent(row["bounced"], sample)
        row["complaint_rate"] = _percent(row["complaints"], sample)
    return rows


def _percent(part: int, whole: int) -> str | None:
    return None if whole <= 0 else f"{100 * part / whole:.2f}%"


# Deliverability: suppressions by reason, feedback events by kind and campaign.
_SUPPRESSIONS = text("SELECT reason, count(*) FROM suppressions GROUP BY reason")
_FEEDBACK = text(
    """
    SELECT e.kind, coalesce(c.name, CASE WHEN m.id IS NULL THEN 'unmatched'
                                         ELSE 'transactional' END) AS campaign,
           count(*) FILTER (WHERE e.received_at >= now() - interval '24 hours') AS last_day,
           count(*) AS total
      FROM feedback_events AS e
      LEFT JOIN email_messages AS m ON m.id = e.email_message_id
      LEFT JOIN promotion_runs AS r ON r.id = m.promotion_run_id
      LEFT JOIN campaigns AS c ON c.id = r.campaign_id
     GROUP BY 1, 2 ORDER BY 1, 2
    """
)


@dataclass
class Deliverability:
    suppressions: dict[str, int]  # reason -> addresses
    feedback: list[dict[str, Any]]  # kind, campaign, last_day, total
    runs_paused: int


def deliverability(session: Session) -> Deliverability:
    suppressed = {str(reason): int(n) for reason, n in session.execute(_SUPPRESSIONS)}
    feedback = [dict(row._mapping) for row in session.execute(_FEEDBACK)]
    paused = session.execute(
        text(
            "SELECT count(*) FROM promotion_runs WHERE paused_at IS NOT NULL"
            " AND cancelled_at IS NULL"
        )
    ).scalar_one()
    return Deliverability(suppressed, feedback, int(paused))


@dataclass(frozen=True)
class Minute:
    minute: datetime
    queue: str
    task: str
    type: str  # procrastinate's event type: succeeded, failed, deferred_for_retry
    n: int


def throughput(session: Session) -> list[Minute]:
    """Job outcomes per minute, queue and task over the last hour."""
    return [
        Minute(minute, queue, task, str(type_), int(n))
        for minute, queue, task, type_, n in session.execute(THROUGHPUT)
    ]


def last_hour(minutes: list[Minute]) -> tuple[dict[str, Counts], dict[str, Counts]]:
    """`outcomes` for the last hour only, from `throughput` (its 24 h counts stay 0)."""
    by_queue: dict[str, Counts] = {}
    by_task: dict[str, Counts] = {}
    for m in minutes:
        name = OUTCOME_NAMES[m.type]
        for key, table in ((m.queue, by_queue), (m.task, by_task)):
            table.setdefault(key, empty_counts())[name]["1h"] += m.n
    return by_queue, by_task
