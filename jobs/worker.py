"""Running a worker: `jobs worker` and the demo."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from jobs.app import QUEUES, app
from jobs.db import dispose_engines
from jobs.mail.pool import close_pool

logger = logging.getLogger(__name__)


async def run_worker(
    *, queues: Sequence[str] | None = None, concurrency: int = 10, drain: bool = False
) -> None:
    """Work ``queues`` (all when None). ``drain`` processes every due job, then returns."""
    unknown = sorted(set(queues or ()) - set(QUEUES))
    if unknown:
        logger.warning("queue(s) %s are not used by any jobs task", ", ".join(unknown))
    try:
        async with app.open_async():
            await app.run_worker_async(
                queues=list(queues or QUEUES),
                concurrency=concurrency,
                wait=not drain,
                install_signal_handlers=not drain,
                listen_notify=not drain,
            )
    finally:
        await close_pool()  # also done when the app closes; harmless twice
        await dispose_engines()
