"""`jobs status`: one snapshot of queues, workers, task rates, the ledger and promotion runs
(`collect`), as JSON for scripts (`as_json`); `jobs.ops.status_text` renders it as text."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from jobs.ops import queries as monitor


@dataclass
class QueueRow:
    queue: str
    todo: int
    due: int
    doing: int
    failed: int  # failed jobs kept (what `jobs retry-failed` can re-queue)
    oldest_due_seconds: float | None
    outcomes: monitor.Counts


@dataclass
class TaskRow:
    task: str
    outcomes: monitor.Counts
    failure_rate: dict[str, float | None]  # window -> failed / (succeeded + failed)


@dataclass
class Status:
    generated_at: datetime
    stalled_after: float
    queues: list[QueueRow]
    workers: list[monitor.WorkerRow]
    tasks: list[TaskRow]
    ledger: monitor.Ledger
    promotion_runs: list[dict[str, Any]]
    unserved: list[str]  # queues with due jobs and no live worker serving them
    deliverability: monitor.Deliverability | None = None


def _rate(counts: monitor.Counts, window: str) -> float | None:
    done = counts["succeeded"][window] + counts["failed"][window]
    return None if done == 0 else counts["failed"][window] / done


def collect(
    session: Session,
    *,
    stalled_after: float,
    queues: Iterable[str] = (),
    minutes: list[monitor.Minute] | None = None,
) -> Status:
    """Everything `jobs status` shows; ``queues`` are listed even when empty.

    With ``minutes`` (`monitor.throughput`), the rates cover the last hour only (the
    dashboard's overview): the 24 h counts, which cost a day of events, stay 0.
    """
    now = monitor.gauges(session, stalled_after=stalled_after)
    if minutes is None:
        by_queue, by_task = monitor.outcomes(session)
    else:
        by_queue, by_task = monitor.last_hour(minutes)
    names = sorted({*queues, *(q for q, _ in now.jobs), *by_queue})
    queue_rows = [
        QueueRow(
            queue=name,
            todo=now.jobs.get((name, "todo"), 0),
            due=now.due.get(name, 0),
            doing=now.jobs.get((name, "doing"), 0),
            failed=now.jobs.get((name, "failed"), 0),
            oldest_due_seconds=now.lag.get(name),
            outcomes=by_queue.get(name, monitor.empty_counts()),
        )
        for name in names
    ]
    task_rows = [
        TaskRow(task, counts, {w: _rate(counts, w) for w in monitor.WINDOWS})
        for task, counts in sorted(by_task.items())
    ]
    workers = monitor.workers(session, stalled_after=stalled_after)
    return Status(
        generated_at=datetime.now(UTC),
        stalled_after=stalled_after,
        queues=queue_rows,
        workers=workers,
        tasks=task_rows,
        ledger=monitor.ledger(session),
        promotion_runs=monitor.promotion_runs(session),
        unserved=monitor.unserved_queues(now.due, workers),
        deliverability=monitor.deliverability(session),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def as_json(status: Status) -> str:
    return json.dumps(asdict(status), default=_plain, indent=2, sort_keys=True)
