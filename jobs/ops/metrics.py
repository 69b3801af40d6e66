"""Prometheus metrics of a worker.

Two kinds:
- counters and histograms this process updates as it works (jobs finished,
  emails by outcome, durations) — sum them over workers;
- gauges about the shared queue (depth, lag, live workers, pending emails),
  computed from PostgreSQL at scrape time by `DatabaseCollector` with one
  query — every worker reports the same value, so aggregate them with max().
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from procrastinate.middleware import AsyncCallNext
from procrastinate.worker import Worker
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from jobs.mail.pool import open_connections
from jobs.ops import queries as monitor
from jobs.tasks import DELIVER_TASK, PROMOTION_TASK, PRUNE_TASK, QUEUES, RECOVER_TASK

logger = logging.getLogger(__name__)

JOB_OUTCOMES = ("succeeded", "failed", "retried", "aborted")
EMAIL_OUTCOMES = ("sent", "failed", "suppressed", "deferred")
QUEUE_STATUSES = ("todo", "doing", "failed")
TASKS = (
    DELIVER_TASK,
    PROMOTION_TASK,
    RECOVER_TASK,
    PRUNE_TASK,
)  # the statuses jobs_queue_jobs publishes

JOBS_FINISHED = Counter(
    "jobs_finished",
    "Jobs this worker finished, by task and outcome (retried: failed, will run again)",
    ["task", "outcome"],
)
JOB_DURATION = Histogram(
    "jobs_job_duration_seconds",
    "How long one job ran on this worker, by task",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
EMAILS = Counter(
    "jobs_emails",
    "Emails this worker handled, by outcome (deferred: transient error or slow down, sent later)",
    ["outcome"],
)
DELIVERY_DURATION = Histogram(
    "jobs_email_delivery_seconds",
    "Time to hand one email to the SMTP server, until it is accepted or refused",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SMTP_CONNECTIONS_OPEN = Gauge(
    "jobs_smtp_connections_open", "SMTP connections this worker holds open"
)
SMTP_CONNECTIONS_OPEN.set_function(open_connections)
STALLED_JOBS = Counter(
    "jobs_stalled_jobs",
    "Jobs found running on a dead worker, by action (retried or failed)",
    ["action"],
)
for _outcome in EMAIL_OUTCOMES:
    EMAILS.labels(_outcome)
for _task in TASKS:
    for _outcome in JOB_OUTCOMES:
        JOBS_FINISHED.labels(_task, _outcome)
for _action in ("retried", "failed"):
    STALLED_JOBS.labels(_action)


async def observe_job(call_next: AsyncCallNext, context: JobContext, worker: Worker) -> Any:
    """Worker middleware: count each job's outcome and time it."""
    job = context.job
    started = time.perf_counter()
    outcome = "failed"
    try:
        result = await call_next()
        outcome = "succeeded"
        return result
    except (asyncio.CancelledError, JobAborted):
        outcome = "aborted"
        raise
    except BaseException as exc:
        task = worker.app.tasks.get(job.task_name)
        if task is not None and task.get_retry_exception(exception=exc, job=job) is not None:
            outcome = "retried"
        raise
    finally:
        JOB_DURATION.labels(job.task_name).observe(time.perf_counter() - started)
        JOBS_FINISHED.labels(job.task_name, outcome).inc()


class DatabaseCollector(Collector):
    """Queue gauges from one query per scrape (never per job)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        stalled_after: float,
        queues: Sequence[str] = QUEUES,
    ) -> None:
        self._sessions = sessions
        self._stalled_after = stalled_after
        self._queues = tuple(queues)  # always published, 0 when empty (not "no data")

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names only: registering must not query the database.
        empty = monitor.Deliverability({}, [], 0)
        return iter(
            [*self._families(monitor.Gauges(), describe=True), *self._deliverability(empty, [])]
        )

    @staticmethod
    def _deliverability(
        found: monitor.Deliverability, runs: list[dict[str, Any]]
    ) -> list[GaugeMetricFamily]:
        suppressed = GaugeMetricFamily(
            "jobs_suppressed_addresses",
            "Addresses on the suppression list, by reason",
            None,
            ["reason"],
        )
        events = GaugeMetricFamily(
            "jobs_feedback_events",
            "Bounces and complaints recorded, by kind and campaign (all time)",
            None,
            ["kind", "campaign"],
        )
        paused = GaugeMetricFamily(
            "jobs_promotion_runs_paused", "Promotion runs the circuit breaker paused"
        )
        rates = GaugeMetricFamily(
            "jobs_promotion_run_rate",
            "Hard-bounce and complaint rate of the latest promotion runs",
            None,
            ["run", "campaign", "kind"],
        )
        for reason, n in sorted(found.suppressions.items()):
            suppressed.add_metric([reason], n)
        for row in found.feedback:
            events.add_metric([row["kind"], row["campaign"]], row["total"])
        paused.add_metric([], found.runs_paused)
        for run in runs:
            sample = run["sent"] + run["refused"]
            for kind, n in (("hard_bounce", run["bounced"]), ("complaint", run["complaints"])):
                if sample:
                    rates.add_metric([str(run["id"]), run["campaign"], kind], n / sample)
        return [suppressed, events, paused, rates]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._sessions() as session:
                gauges = monitor.gauges(session, stalled_after=self._stalled_after)
                feedback = monitor.deliverability(session)
                runs = monitor.promotion_runs(session)
        except (SQLAlchemyError, OSError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            logger.warning("metrics: queue gauges unavailable: %s", reason)
            gauges = None
            return iter(self._families(gauges))
        return iter([*self._families(gauges), *self._deliverability(feedback, runs)])

    def _families(
        self, gauges: monitor.Gauges | None, *, describe: bool = False
    ) -> list[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "jobs_database_up", "1 if the last scrape could query PostgreSQL, else 0"
        )
        jobs = GaugeMetricFamily(
            "jobs_queue_jobs",
            "Jobs per queue and status (todo, doing, failed)",
            None,
            ["queue", "status"],
        )
        due = GaugeMetricFamily(
            "jobs_queue_due_jobs", "todo jobs whose time has come, per queue", None, ["queue"]
        )
        lag = GaugeMetricFamily(
            "jobs_queue_oldest_due_seconds",
            "Age of the oldest due todo job per queue (queue lag)",
            None,
            ["queue"],
        )
        workers = GaugeMetricFamily(
            "jobs_workers_alive", "Workers whose heartbeat is fresh (WORKER_STALLED_AFTER)"
        )
        pending = GaugeMetricFamily("jobs_emails_pending", "Ledger rows still pending")
        families = [up, jobs, due, lag, workers, pending]
        if describe:
            return families
        if gauges is None:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        queues = sorted({*self._queues, *(q for q, _ in gauges.jobs), *gauges.due})
        for queue in queues:
            for status in QUEUE_STATUSES:
                jobs.add_metric([queue, status], gauges.jobs.get((queue, status), 0))
            due.add_metric([queue], gauges.due.get(queue, 0))
            lag.add_metric([queue], gauges.lag.get(queue, 0.0))
        workers.add_metric([], gauges.workers_alive)
        pending.add_metric([], gauges.emails_pending)
        return families
