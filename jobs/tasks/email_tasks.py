"""The email delivery task: one job carries 1..N ledger ids."""

from __future__ import annotations

from procrastinate import JobContext, RetryStrategy

from jobs.app import app
from jobs.db import async_session_factory, database_url
from jobs.delivery import deliver_messages
from jobs.mail.config import MailConfig
from jobs.results import store_result_async
from jobs.settings import get_settings

DELIVER_TASK = "email.deliver"
EMAIL_QUEUE = "email"
MAX_ATTEMPTS = 5  # retries after the first run

retry = RetryStrategy(max_attempts=MAX_ATTEMPTS, exponential_wait=2)


@app.task(name=DELIVER_TASK, queue=EMAIL_QUEUE, retry=retry, pass_context=True)
async def deliver(context: JobContext, message_ids: list[int]) -> dict[str, int]:
    """Send the pending messages among ``message_ids``; transient errors retry."""
    settings = get_settings()
    sessions = async_session_factory(database_url(settings))
    final = context.job.attempts >= MAX_ATTEMPTS  # procrastinate retries while attempts < max
    async with sessions() as session, session.begin():
        report = await deliver_messages(
            session, message_ids, mail=MailConfig.from_settings(settings), final_attempt=final
        )
        # Results (issue 6): the summary commits with the ledger updates (not on
        # an attempt that is about to retry: its summary would be partial).
        if report.retry is None or final:
            await store_result_async(
                session, job_id=context.job.id, task_name=DELIVER_TASK, result=report.summary()
            )
    if report.retry is not None and not final:
        raise report.retry
    return report.summary()
