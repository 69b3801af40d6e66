"""Running a worker: `jobs worker` and the demo."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

from procrastinate.app import WorkerOptions
from procrastinate.worker import Worker
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError

from jobs.app import app
from jobs.db import async_session_factory, dispose_engines
from jobs.db.queue_sql import RECORD_WORKER
from jobs.mail.pool import close_pool
from jobs.models import WorkerInfo
from jobs.tasks import QUEUES
from jobs.worker.operations import Operations, supervise

logger = logging.getLogger(__name__)


async def run_worker(
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    drain: bool = False,
    ops: Operations | None = None,
) -> None:
    """Work ``queues`` (all when None). ``drain`` processes every due job, then returns.

    Otherwise the worker runs until SIGTERM/SIGINT, serving /metrics and /healthz
    and shutting down gracefully as ``ops`` says.
    """
    unknown = sorted(set(queues or ()) - set(QUEUES))
    if unknown:
        logger.warning("queue(s) %s are not used by any jobs task", ", ".join(unknown))
    ops = ops or Operations()
    options = ops.worker_options(
        queues=list(queues or QUEUES), concurrency=concurrency, drain=drain
    )

    url = ops.database_url

    async def run() -> None:
        await _run_announced(options, url)

    try:
        async with app.open_async():
            if drain:
                await run()
            else:
                await supervise(run, ops)
    finally:
        await close_pool()  # also done when the app closes; harmless twice
        await dispose_engines()


# procrastinate has no hook after a worker registers: its id appears on the Worker object.
_ID_POLL_SECONDS = 0.05


async def _run_announced(options: WorkerOptions, url: str | None) -> None:
    """procrastinate's worker (what `App.run_worker_async` runs), and a `worker_info` row
    saying on which host and pid it runs and which queues it serves (when ``url``)."""
    app.perform_import_paths()
    merged: WorkerOptions = {**app.worker_defaults, **options}  # as App._worker merges them
    worker = Worker(app=app, **merged)
    announcer = None
    if url is not None:
        queues = list(options.get("queues") or ())
        announcer = asyncio.ensure_future(_announce(worker, url, queues))
    try:
        await worker.run()  # type: ignore[no-untyped-call]  # procrastinate leaves it untyped
    finally:
        if announcer is not None:
            announcer.cancel()
            await _forget(announcer, url)


async def _announce(worker: Worker, url: str, queues: list[str]) -> int:
    while worker.worker_id is None:  # noqa: ASYNC110  # procrastinate sets it, signals nothing
        await asyncio.sleep(_ID_POLL_SECONDS)
    worker_id = worker.worker_id
    params: dict[str, Any] = {
        "worker_id": worker_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queues": queues,
    }
    try:
        async with async_session_factory(url)() as session, session.begin():
            await session.execute(RECORD_WORKER, params)
    except SQLAlchemyError as exc:  # the dashboard shows "?" for it; the worker goes on
        logger.warning("could not record worker %s in worker_info: %s", worker_id, exc)
    return worker_id


async def _forget(announcer: asyncio.Future[int], url: str | None) -> None:
    [worker_id] = await asyncio.gather(announcer, return_exceptions=True)
    if url is None or not isinstance(worker_id, int):
        return
    try:
        async with async_session_factory(url)() as session, session.begin():
            await session.execute(delete(WorkerInfo).where(WorkerInfo.worker_id == worker_id))
    except SQLAlchemyError as exc:
        logger.debug("worker_info row left behind (the next worker removes it): %s", exc)
