"""The email delivery task: one job carries 1..N ledger ids."""

from __future__ import annotations

from procrastinate import JobContext, RetryStrategy

from jobs.app import app
from jobs.db import async_session_factory, database_url
from jobs.delivery import deliver_messages
from jobs.mail.config import MailConfig
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
    if report.retry is not None:
        # What was sent (and, on the final attempt, failed) is committed; raising makes
        # procrastinate retry, or end the job `failed` after the last attempt.
        raise report.retry
    return report.summary()
