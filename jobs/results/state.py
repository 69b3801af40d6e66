"""What became of a job: the `Result` that `jobs.results.get_result` answers with."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from jobs.models import ResultStatus

NO_REASON = "no error was recorded (see the worker logs)"


class State(enum.StrEnum):
    PENDING = "pending"  # waiting, running, or waiting for a retry
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    UNKNOWN = "unknown"  # no such job (never deferred, or pruned without a result)


# procrastinate_jobs.status -> State
JOB_STATES = {
    "todo": State.PENDING,
    "doing": State.PENDING,
    "succeeded": State.SUCCEEDED,
    "failed": State.FAILED,
    "cancelled": State.CANCELLED,
    "aborting": State.ABORTED,
    "aborted": State.ABORTED,
}
_CACHED_FIELDS = ("task_name", "result", "finished_at")


@dataclass(frozen=True)
class Result:
    """What became of a job. ``value`` when succeeded; ``error`` is the failure
    reason, or for a pending job the error of its last failed attempt."""

    job_id: int
    state: State
    value: Any = None
    error: str | None = None
    task_name: str | None = None
    finished_at: datetime | None = None  # when the value / the last error was recorded

    def __str__(self) -> str:
        if self.state is State.SUCCEEDED:
            return f"succeeded: {json.dumps(self.value, ensure_ascii=False)}"
        if self.state is State.FAILED:
            return f"failed: {self.error or NO_REASON}"
        if self.state is State.PENDING and self.error:
            return f"pending (last attempt failed: {self.error})"
        return "unknown job" if self.state is State.UNKNOWN else self.state.value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (`jobs result --json`)."""
        finished = self.finished_at.isoformat() if self.finished_at else None
        return {
            "job_id": self.job_id,
            "state": self.state.value,
            "result": self.value,
            "error": self.error,
            "task_name": self.task_name,
            "finished_at": finished,
        }

    def to_cache(self) -> dict[str, Any]:
        """What Redis keeps for a succeeded job (a JSON object)."""
        entry = self.to_dict()
        return {key: entry[key] for key in _CACHED_FIELDS}

    @classmethod
    def from_cache(cls, job_id: int, entry: dict[str, Any]) -> Result:
        finished = entry.get("finished_at")
        return cls(
            job_id,
            State.SUCCEEDED,
            value=entry.get("result"),
            task_name=entry.get("task_name"),
            finished_at=datetime.fromisoformat(finished) if isinstance(finished, str) else None,
        )


def interpret(job_id: int, row: Row[Any]) -> Result:
    """The `Result` for a row of procrastinate's job (``job_status``, ``job_task``)
    joined with its `job_results` row: procrastinate's status decides while the
    job row exists; a pruned job is answered from `job_results` alone."""
    if row.job_status is None and row.status is None:
        return Result(job_id, State.UNKNOWN)
    state = JOB_STATES.get(row.job_status) or State(row.status)
    succeeded, failed = row.status == ResultStatus.SUCCEEDED, row.status == ResultStatus.FAILED
    error = row.error if failed else None
    return Result(
        job_id,
        state,
        value=row.result if state is State.SUCCEEDED and succeeded else None,
        error=(error or NO_REASON) if state is State.FAILED else error,
        task_name=row.task_name or row.job_task,
        finished_at=row.finished_at,
    )
