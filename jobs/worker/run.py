"""Running a worker: `jobs worker` and the demo."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from jobs.app import app
from jobs.db import dispose_engines
from jobs.mail.pool import close_pool
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
    run = functools.partial(app.run_worker_async, **options)
    try:
        async with app.open_async():
            if drain:
                await run()
            else:
                await supervise(run, ops)
    finally:
        await close_pool()  # also done when the app closes; harmless twice
        await dispose_engines()
