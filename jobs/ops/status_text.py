"""`jobs status` as one screen of text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from jobs.ops import queries as monitor
from jobs.ops.status import Status


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        padded = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        return "  " + "  ".join(padded).rstrip()

    return [line(row) for row in cells]


_KINDS = ("succeeded", "failed", "retried")


def _windows(counts: monitor.Counts) -> list[str]:
    return [f"{counts[k]['1h']} | {counts[k]['24h']}" for k in _KINDS]


def _queues(status: Status) -> list[str]:
    header = ("queue", "todo", "due", "doing", "lag", "ok", "failed", "retried", "failed kept")
    rows = [
        [
            q.queue,
            q.todo,
            q.due,
            q.doing,
            _age(q.oldest_due_seconds),
            *_windows(q.outcomes),
            q.failed,
        ]
        for q in status.queues
    ]
    return ["Queues (lag: oldest due job; ok/failed/retried: last 1h | 24h)", *_table(header, rows)]


def _workers(status: Status) -> list[str]:
    alive = sum(w.alive for w in status.workers)
    title = f"Workers: {alive} alive (stalled after {_age(status.stalled_after)} without heartbeat)"
    rows = [
        [
            w.id,
            w.host or "?",
            "?" if w.pid is None else w.pid,
            "?" if w.queues is None else ",".join(w.queues),
            _age(w.seconds_since_heartbeat) + " ago",
            w.running,
            "alive" if w.alive else "STALLED",
        ]
        for w in status.workers
    ]
    header = ("worker", "host", "pid", "queues", "heartbeat", "running", "state")
    lines = [title, *(_table(header, rows) if rows else [])]
    lines += [
        f"  WARNING: queue {q!r} has due jobs and no live worker serves it" for q in status.unserved
    ]
    return lines


def _tasks(status: Status) -> list[str]:
    if not status.tasks:
        return ["Tasks", "  no job finished in the last 24h"]
    rows = [
        [
            t.task,
            *_windows(t.outcomes),
            f"{_pct(t.failure_rate['1h'])} | {_pct(t.failure_rate['24h'])}",
        ]
        for t in status.tasks
    ]
    header = ("task", "ok", "failed", "retried", "failure rate")
    return ["Tasks (last 1h | 24h)", *_table(header, rows)]


def _ledger(status: Status) -> list[str]:
    led = status.ledger
    title = f"Email ledger: {led.pending} pending (oldest {_age(led.oldest_pending_seconds)})"
    statuses = sorted({*led.created["1h"], *led.created["24h"]})
    if not statuses:
        return [title, "  no email created in the last 24h"]
    rows = [[w, *(led.created[w].get(s, 0) for s in statuses)] for w in monitor.WINDOWS]
    return [title, *_table(("created in", *statuses), rows)]


def _runs(status: Status) -> list[str]:
    runs = status.promotion_runs
    if not runs:
        return ["Promotion runs", "  none yet"]
    columns = list(runs[0])
    return [
        "Promotion runs (latest)",
        *_table(columns, ([_cell(r[c]) for c in columns] for r in runs)),
    ]


def _deliverability(status: Status) -> list[str]:
    found = status.deliverability
    if found is None:
        return []
    suppressed = ", ".join(f"{reason} {n}" for reason, n in sorted(found.suppressions.items()))
    lines = [
        "Deliverability",
        f"  suppressed addresses: {sum(found.suppressions.values())}"
        + (f" ({suppressed})" if suppressed else ""),
        f"  promotion runs paused by the circuit breaker: {found.runs_paused}"
        + ("  (`jobs promote --resume RUN_ID` or `--cancel RUN_ID`)" if found.runs_paused else ""),
    ]
    if found.feedback:
        columns = ["kind", "campaign", "last_day", "total"]
        lines += _table(columns, ([_cell(row[c]) for c in columns] for row in found.feedback))
    return lines


def render(status: Status) -> str:
    """One screen of text."""
    lines = [f"jobs status at {status.generated_at:%Y-%m-%d %H:%M:%S} UTC"]
    for section in (_queues, _workers, _tasks, _ledger, _runs, _deliverability):
        lines += ["", *section(status)]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)
