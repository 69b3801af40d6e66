"""Sending a just-committed transactional email without fetching its job first.

A welcome email or a password reset is one `email.deliver` job. Fetched the usual
way, it costs procrastinate's fetch (a round trip and a commit that waits for the
disk) and a job's start before the batch lock even runs: on an idle worker, about
half of the time from the sign-up's commit to the SMTP server's answer.

Each worker process that serves the email queue runs one sweeper beside
procrastinate's fetch loop. procrastinate's own "job inserted" notification wakes
it; it runs sweep batches (`jobs.mail.delivery.deliver_batch` with no rows of its
own), whose lock takes waiting one-email transactional jobs with their messages,
sends them, and records the messages and finishes the jobs in one transaction, as
a running delivery job does. Once it has caught up (no notification came during
its sweep), it wakes procrastinate's fetch, which runs whatever the sweep left:
jobs of several messages, other queues, retries, a message the server deferred
or throttled (its job, unlocked at the commit, runs it). During a burst it sweeps
again and again instead, and the fetch only runs as jobs end and at its polling
interval: fetching and starting a job per email is what the sweeper spares.

A sweep that fails (the database or the SMTP server away) is logged and changes
nothing else: its rows and jobs are unlocked at the rollback, and the fetch that
follows runs them as jobs, with their retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from procrastinate.jobs import Notification

from jobs.errors import describe
from jobs.mail.delivery import SWEEP_BATCHES, Delivery, Report, deliver_batch
from jobs.settings import Settings
from jobs.tasks import EMAIL_QUEUE
from jobs.worker.deliveries import batch_session, delivery_for
from jobs.worker.outage import OutageWorker

logger = logging.getLogger(__name__)

STOPPED = "the worker stopped during the sweep"


class Sweeper:
    """The sweeper of one worker run: `wake` it, `run` it as a side task, `stop` it."""

    def __init__(self, settings: Settings, url: str, *, after: Callable[[], None]) -> None:
        self.settings = settings
        self.url = url
        self.after = after  # called once it has caught up: procrastinate's fetch goes next
        self.sweeps = 0
        self._wake = asyncio.Event()
        self._wake.set()  # a first sweep at start: mail committed while no worker ran
        self._stopping = False
        self._delivery: Delivery | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                more = await self.sweep()
            except Exception as exc:
                logger.warning("sweep of waiting transactional emails failed: %s", describe(exc))
                self.after()  # its jobs go the usual way, with their retries
                continue
            if more:
                self._wake.set()
            elif not self._wake.is_set():  # caught up: procrastinate's fetch takes the rest
                self.after()

    def stop(self) -> None:
        """Stop after the batch in progress (committed, so no sent email stays pending)."""
        self._stopping = True
        self._wake.set()

    async def sweep(self) -> bool:
        """Send what waiting one-email jobs carry, batch by batch, while batches come full
        (at most `SWEEP_BATCHES`). True if there may be more."""
        if self._delivery is None:
            self._delivery = await delivery_for(
                self.settings,
                self.url,
                bulk=False,
                final_attempt=False,
                interrupted=lambda: STOPPED,
            )
        run = self._delivery
        report = Report()
        async with batch_session(self.url) as session:
            while not report.done and not self._stopping:
                async with session.begin():
                    tally = await deliver_batch(session, [], report, run)
                tally.publish()  # committed
        self.sweeps += 1
        if report.sent or report.failed or report.suppressed:
            logger.info("sweep: %s", report.summary())
        if report.error is not None:
            if isinstance(report.error, asyncio.CancelledError):
                raise report.error
            logger.info("sweep stopped: %s; the jobs left retry", describe(report.error))
            self.after()  # procrastinate runs them, with their retries
            return False
        return report.sweeps >= SWEEP_BATCHES


class SweepingWorker(OutageWorker):
    """procrastinate's worker (`OutageWorker`) with a `Sweeper` beside its fetch loop,
    when it serves the email queue, waits for jobs and listens for them."""

    sweeper: Sweeper | None = None
    _sweeping: asyncio.Task[None] | None = None  # the sweeper's side task

    def sweep_with(self, settings: Settings, url: str) -> None:
        if self.wait and self.listen_notify and (not self.queues or EMAIL_QUEUE in self.queues):
            self.sweeper = Sweeper(settings, url, after=self._new_job_event.set)

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        side_tasks = super()._start_side_tasks()
        if self.sweeper is not None:
            self._sweeping = asyncio.create_task(self.sweeper.run(), name="sweeper")
            side_tasks.append(self._sweeping)
        return side_tasks

    async def _handle_notification(self, *, channel: str, notification: Notification) -> None:
        if self.sweeper is not None and notification["type"] == "job_inserted":
            self.sweeper.wake()  # which wakes the fetch once it has caught up
            return
        await super()._handle_notification(channel=channel, notification=notification)

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        if self.sweeper is not None and self._sweeping is not None:
            self.sweeper.stop()
            timeout = self.shutdown_graceful_timeout
            await asyncio.wait([self._sweeping], timeout=timeout)  # then cancelled with the rest
        await super()._shutdown(side_tasks)
