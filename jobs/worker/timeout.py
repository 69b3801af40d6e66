"""A time limit for every job: a procrastinate worker middleware.

``JOB_TIMEOUT_SECONDS`` applies to every task unless `set_task_timeout` gives
that task its own limit. A job over its limit is cancelled and fails with
`JobTimeout` (a `TimeoutError`), which the task's retry strategy may retry.
For a sync task only the wait is cut short: its thread cannot be interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from procrastinate import JobContext
from procrastinate.middleware import AsyncCallNext

from jobs.settings import get_settings

logger = logging.getLogger(__name__)

DEADLINE_KEY = "jobs.deadline"  # in JobContext.additional_context: loop time of the limit

_task_timeouts: dict[str, float] = {}


class JobTimeout(TimeoutError):
    """A job ran longer than its time limit and was cancelled."""


def set_task_timeout(task_name: str, seconds: float | None) -> None:
    """Give ``task_name`` its own limit (None: back to ``JOB_TIMEOUT_SECONDS``)."""
    if seconds is None:
        _task_timeouts.pop(task_name, None)
        return
    if seconds <= 0:
        raise ValueError(f"timeout for {task_name!r} must be positive, got {seconds!r}")
    _task_timeouts[task_name] = seconds


def timeout_for(task_name: str, default: float) -> float:
    return _task_timeouts.get(task_name, default)


def deadline_passed(context: JobContext) -> bool:
    """Inside a task: whether its time limit has been reached."""
    deadline = context.additional_context.get(DEADLINE_KEY)
    # The loop may fire a timer up to its clock resolution early.
    return deadline is not None and asyncio.get_running_loop().time() >= deadline - 0.01


async def timeout_middleware(call_next: AsyncCallNext, context: JobContext, worker: Any) -> Any:
    """Run the job under its time limit."""
    seconds = timeout_for(context.job.task_name, get_settings().JOB_TIMEOUT_SECONDS)
    deadline = asyncio.get_running_loop().time() + seconds
    context.additional_context[DEADLINE_KEY] = deadline
    limit = asyncio.timeout_at(deadline)
    try:
        async with limit:
            return await call_next()
    except TimeoutError as exc:
        if not limit.expired():
            raise  # the task's own TimeoutError, not ours
        logger.warning("job %s timed out after %g s", context.job.call_string, seconds)
        raise JobTimeout(f"{context.job.task_name} timed out after {seconds:g} s") from exc
