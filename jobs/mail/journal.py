"""The journal of accepted messages: what the SMTP server took is never forgotten.

A delivery job records its outcomes in the ledger in its own transaction, one
batch at a time. If that transaction is lost — the worker is killed, PostgreSQL
restarts — the messages the server accepted meanwhile would still be
``pending`` and a retry would send them again. So each acceptance also goes,
the moment it happens, to the process's `Journal`:

- in memory at once (`add`), then written to ``email_accepted`` by a writer
  task on its own autocommit connection: one INSERT per group of acceptances,
  a group gathered for `LINGER` seconds;
- a batch waits until its acceptances are written, then records its rows
  ``sent`` and drops their entries in one statement (`jobs.mail.ledger.record`);
- while the database is away the entries stay in memory and the writer retries
  with capped backoff; a delivery job in this process consults memory too;
- a delivery job that locks a pending row gets its entry with it
  (`jobs.mail.ledger.lock_batch`): an accepted row is recorded ``sent`` with
  its Message-ID, never sent again.

What a SIGKILL can still duplicate is what was on the SMTP connections and the
group being gathered or written at that moment (README, "Delivery guarantees").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

FIRST_RETRY = 0.2  # seconds; doubles up to MAX_RETRY while the database is away
MAX_RETRY = 5.0
CONNECT_TIMEOUT = 5
# Each group gathers acceptances this long before it is written: a write every few
# milliseconds instead of one per acceptance or two (a fifth of the commits, measured in
# `make bench`), for a SIGKILL window of the same few milliseconds.
LINGER = 0.005


@dataclass(frozen=True)
class Accepted:
    """One message the SMTP server accepted."""

    id: int  # the ledger row
    message_id: str
    subject: str | None
    sent_at: datetime


# Only rows still pending: once a batch has committed `sent`, its acceptances are moot.
# The arrays go in binary (`%b`): psycopg writes a timestamp array as text at a few
# microseconds an element, about ten times its binary form, for every email sent.
_WRITE = """
INSERT INTO email_accepted (id, message_id, subject, sent_at)
SELECT v.id, v.message_id, v.subject, v.sent_at
  FROM unnest(%(ids)b::bigint[], %(message_ids)b::text[], %(subjects)b::text[],
              %(sent_at)b::timestamptz[]) AS v(id, message_id, subject, sent_at)
 WHERE EXISTS (SELECT 1 FROM email_messages m WHERE m.id = v.id AND m.status = 'pending')
ON CONFLICT (id) DO NOTHING
"""


class Journal:
    """The process's accepted-message journal for one database, on one event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.get_running_loop()
        self._unwritten: dict[int, Accepted] = {}
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()  # notified after every write attempt
        self._connection: psycopg.AsyncConnection | None = None
        self._writer: asyncio.Task[None] | None = None
        self.failing = False  # the last write failed (the database is away)

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    def add(self, accepted: Accepted) -> None:
        """Remember an acceptance now; it is written to the database as soon as possible."""
        self._unwritten[accepted.id] = accepted
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name="jobs-journal")

    def remembered(self, ids: Iterable[int]) -> dict[int, Accepted]:
        """The acceptances among ``ids`` held in memory (not written yet)."""
        return {i: self._unwritten[i] for i in ids if i in self._unwritten}

    async def flush(self, patience: float) -> bool:
        """Wait until every acceptance is written (True) or ``patience`` seconds pass (False)."""
        return await self._wait(lambda: not self._unwritten, patience)

    async def written(self, ids: Sequence[int], patience: float) -> bool:
        """Wait until the acceptances among ``ids`` are written, the writer fails (the
        database is away) or ``patience`` seconds pass; True if they are written."""
        wanted = set(ids)
        await self._wait(lambda: self.failing or not wanted & self._unwritten.keys(), patience)
        return not wanted & self._unwritten.keys()

    async def _wait(self, done: Callable[[], bool], patience: float) -> bool:
        try:
            async with asyncio.timeout(patience), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            return False
        return True

    async def close(self, patience: float = 5.0) -> None:
        """Write what is left (up to ``patience`` seconds), then stop the writer."""
        if self._unwritten and not await self.flush(patience):
            logger.error(
                "%d accepted message(s) could not be journaled before exit: "
                "a retry may send them again",
                len(self._unwritten),
            )
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self._disconnect()

    async def _write_forever(self) -> None:
        delay = FIRST_RETRY
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._unwritten:
                await asyncio.sleep(LINGER)
                group = list(self._unwritten.values())
                try:
                    await self._write(group)
                except (psycopg.Error, OSError) as exc:
                    await self._disconnect()
                    if not self.failing:
                        logger.warning(
                            "cannot journal %d accepted message(s) yet, keeping them in memory "
                            "and retrying: %s",
                            len(group),
                            (str(exc).strip().splitlines() or [type(exc).__name__])[0],
                        )
                    self.failing = True
                    async with self._changed:
                        self._changed.notify_all()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY)
                    continue
                if self.failing:
                    logger.warning("journaled the accepted messages kept in memory")
                self.failing, delay = False, FIRST_RETRY
                for accepted in group:
                    if self._unwritten.get(accepted.id) is accepted:
                        del self._unwritten[accepted.id]
                async with self._changed:
                    self._changed.notify_all()

    async def _write(self, group: Sequence[Accepted]) -> None:
        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )
        await self._connection.execute(
            _WRITE,
            {
                "ids": [a.id for a in group],
                "message_ids": [a.message_id for a in group],
                "subjects": [a.subject for a in group],
                "sent_at": [a.sent_at for a in group],
            },
        )

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await connection.close()


_PRUNE = text(
    """
    DELETE FROM email_accepted AS a
     WHERE NOT EXISTS (SELECT 1 FROM email_messages m WHERE m.id = a.id AND m.status = 'pending')
    """
)


async def prune_settled(session: AsyncSession) -> int:
    """Drop entries whose ledger row no longer waits (a write that raced its batch's
    commit leaves one behind; it is inert, this keeps the table small)."""
    result = await session.execute(_PRUNE)
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult


_journal: Journal | None = None


def get_journal(url: str) -> Journal:
    """The process's journal for ``url`` on the running loop (created on first use)."""
    global _journal
    loop = asyncio.get_running_loop()
    if _journal is None or (_journal.url, _journal.loop) != (url, loop):
        _journal = Journal(url)
    return _journal


def current_journal() -> Journal | None:
    return _journal


async def close_journal() -> None:
    """Write what is left and close (worker shutdown)."""
    global _journal
    current, _journal = _journal, None
    if current is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - called from sync code
        running = None
    if current.loop is running:
        await current.close()
