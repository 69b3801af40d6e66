"""The worker middleware that records each job's outcome in `job_results`.

It is installed on the app (``worker_defaults``), so ``jobs worker``,
``procrastinate --app=jobs.app.app worker`` and the test workers all run it:

- an attempt that raises: its error is recorded in a short transaction of its
  own (the task's transaction rolled back). The job then retries or fails as its
  retry strategy says; recording never changes that, and never hides the error.
- a success with a value: the value is stored unless the task already stored it
  in its own transaction (`jobs.results.store_result`), then written through to
  Redis. A value that is not JSON or is over RESULT_MAX_BYTES fails the job. A
  task that says it committed its value (`mark_stored`) costs no query at all
  when there is no Redis to write through to.
- a success without a value after failed attempts: the failure record is
  marked succeeded, so a pruned job still reads as succeeded.

A task's return value is its result: return JSON (or None).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable, Row, Table, bindparam, func, select, union_all, update
from sqlalchemy.dialects.postgresql import insert

from jobs.db import async_engine, database_url
from jobs.errors import describe
from jobs.models import JobResult, ResultStatus
from jobs.results.cache import result_cache
from jobs.results.state import Result, State
from jobs.results.store import UPSERT_OVER_FAILURE, result_params
from jobs.settings import get_settings

if TYPE_CHECKING:
    from procrastinate import JobContext
    from procrastinate.jobs import Job
    from procrastinate.middleware import AsyncCallNext
    from procrastinate.worker import Worker

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000  # a failure reason is a diagnostic; the traceback is in the logs
STORED_KEY = "jobs.result_stored"  # in JobContext.additional_context


def mark_stored(context: JobContext) -> None:
    """Inside a task: its return value is committed already (`store_result_async`)."""
    context.additional_context[STORED_KEY] = True


async def record_outcome(call_next: AsyncCallNext, context: JobContext, worker: Worker) -> Any:
    """procrastinate worker middleware: see the module docstring."""
    job = context.job
    try:
        value = await call_next()
        stored = context.additional_context.get(STORED_KEY, False)
        if value is not None and not (stored and result_cache(get_settings()) is None):
            await _store(job, value)
        elif job.attempts:
            await _clear_failure(job)
    except Exception as exc:
        await _record_failure(job, exc)
        raise
    return value


async def _execute(statement: Executable, params: dict[str, Any] | None = None) -> list[Row[Any]]:
    """One statement, committed on its own (autocommit: no BEGIN/COMMIT round trips)."""
    async with async_engine(database_url(get_settings())).connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        result = await autocommit.execute(statement, params)
        return list(result.all()) if result.returns_rows else []


def _store_statement() -> Executable:
    """What this wrote, or what the task stored itself, in one statement (the snapshot
    predates the INSERT, so exactly one row comes back). Built once: see `UPSERT`."""
    table = JobResult.__table__
    assert isinstance(table, Table)  # a mapped class's table
    shown = (table.c.task_name, table.c.result, table.c.finished_at)
    written = UPSERT_OVER_FAILURE.returning(*shown).cte("written")
    stored_before = select(*shown).where(
        table.c.job_id == bindparam("job_id"), table.c.status == ResultStatus.SUCCEEDED
    )
    return union_all(select(written), stored_before)


_STORE = _store_statement()


async def _store(job: Job, value: Any) -> None:
    settings = get_settings()
    params = result_params(job.id, job.task_name, value, max_bytes=settings.RESULT_MAX_BYTES)
    [row] = await _execute(_STORE, params)
    cache = result_cache(settings)
    if cache is not None:
        assert job.id is not None
        stored = Result(
            job.id,
            State.SUCCEEDED,
            value=row.result,
            task_name=row.task_name,
            finished_at=row.finished_at,
        )
        await cache.put_async(job.id, stored.to_cache())


async def _clear_failure(job: Job) -> None:
    """The job succeeded without a value: its earlier failure record no longer holds."""
    statement = (
        update(JobResult)
        .where(JobResult.job_id == job.id, JobResult.status == ResultStatus.FAILED)
        .values(status=ResultStatus.SUCCEEDED, error=None, result=None, finished_at=func.now())
    )
    await _execute(statement)


async def _record_failure(job: Job, exc: Exception) -> None:
    row = {
        "job_id": job.id,
        "task_name": job.task_name,
        "status": ResultStatus.FAILED,
        "result": None,
        "error": describe(exc, MAX_ERROR_CHARS),
    }
    statement = insert(JobResult).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=[JobResult.job_id], set_={**row, "finished_at": func.now()}
    )
    try:
        await _execute(statement)
    except Exception as error:  # the task's own error matters more: log this one, raise that one
        # One line: during a database outage every running job comes here.
        logger.warning("could not record the failure of job %s: %s", job.id, describe(error, 200))
