"""The promotion task, triggered by PROMOTION_CRON from inside the workers.

procrastinate's periodic deferrer (in every worker) defers one job per tick,
deduplicated in the database, so the promotion runs once per period however
many workers run. `jobs.app` registers it with PROMOTION_CRON when the worker
loads its tasks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import sqlalchemy.exc
from procrastinate.exceptions import ConnectorException

from jobs.app import app
from jobs.db import async_session_factory, database_url
from jobs.promotions.promote import promotion_config, send_promotions
from jobs.promotions.schedule import period_of
from jobs.settings import get_settings
from jobs.tasks import DEFAULT_QUEUE, PROMOTION_TASK
from jobs.worker.retry import Backoff, BackoffRetry
from jobs.worker.timeout import JobTimeout

# A retry resumes the run from its cursor (every chunk is idempotent), so a
# lost database, a job timeout or a worker shut down mid-run all retry;
# configuration errors are not retried.
retry = BackoffRetry(
    lambda: Backoff(max_attempts=5, base_delay=5.0, max_delay=300.0),
    (
        sqlalchemy.exc.OperationalError,
        psycopg.OperationalError,
        ConnectorException,
        JobTimeout,
        asyncio.CancelledError,
    ),
)


@app.task(name=PROMOTION_TASK, queue=DEFAULT_QUEUE, retry=retry)
async def send_promotion_emails(timestamp: int) -> list[dict[str, Any]]:
    """Fan every active campaign out for the period ``timestamp`` names; one summary each."""
    settings = get_settings()
    summaries = await send_promotions(
        async_session_factory(database_url(settings)),
        period=period_of(timestamp),
        config=promotion_config(settings),
    )
    return [summary.as_dict() for summary in summaries]
