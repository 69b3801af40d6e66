"""`jobs demo`: the whole flow on this machine, with no configuration at all.

Embedded PostgreSQL (unless DATABASE_URL is set), migrations, a local SMTP
sink writing ``.eml`` files, a few sign-ups (one rolled back), a worker run
until the queue is drained, and a summary.

It works in a database of its own (``jobs_demo`` on the same server), never in
the configured one: draining that one into a local sink would lose real mail.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sqlalchemy import func, select

from jobs.accounts import EmailTaken, register_user, register_user_async
from jobs.db import (
    async_session_factory,
    check_connection,
    create_database,
    database_url,
    describe_server,
    session_factory,
)
from jobs.db.migrations import migrate
from jobs.dev.sink import Sink
from jobs.models import EmailMessage, EmailStatus, User
from jobs.settings import get_settings
from jobs.worker.run import run_worker

DEMO_USERS = [
    ("alice@example.com", "alice"),
    ("bob@example.com", "bob"),
    ("carol@example.com", "carol"),
]
ROLLED_BACK = ("mallory@example.com", "mallory")


DEMO_DATABASE = "jobs_demo"


def _point_at(url: str, sink: Sink) -> None:
    """Task bodies read settings themselves: the demo database, mail to the sink, and no
    scheduled promotion (its worker only drains what the demo queued)."""
    os.environ.update(
        DATABASE_URL=url,
        PROMOTION_SCHEDULE_ENABLED="false",
        MAIL_SERVER=sink.host,
        MAIL_PORT=str(sink.port),
        MAIL_USERNAME="",
        MAIL_PASSWORD="",
        MAIL_STARTTLS="false",
        MAIL_SSL_TLS="false",
    )
    get_settings.cache_clear()


def _register_sync(url: str) -> tuple[int, int]:
    created = existing = 0
    sessions = session_factory(url)
    for email, username in DEMO_USERS[:2]:
        with sessions() as session, session.begin():
            try:
                register_user(session, email=email, username=username)
                created += 1
            except EmailTaken:
                existing += 1
    with sessions() as session:
        register_user(session, email=ROLLED_BACK[0], username=ROLLED_BACK[1])
        session.rollback()  # the application changed its mind: no user, no email
    return created, existing


async def _register_async_and_work(url: str) -> tuple[int, int]:
    """The async API, then a worker until every due job is done."""
    email, username = DEMO_USERS[2]
    created = existing = 0
    try:
        async with async_session_factory(url)() as session, session.begin():
            await register_user_async(session, email=email, username=username)
            created = 1
    except EmailTaken:
        existing = 1
    await run_worker(drain=True, concurrency=4)
    return created, existing


def _ledger(url: str) -> dict[str, int]:
    with session_factory(url)() as session:
        rows = session.execute(
            select(EmailMessage.status, func.count()).group_by(EmailMessage.status)
        ).all()
        has_mallory = session.scalar(select(func.count()).where(User.username == ROLLED_BACK[1]))
    counts = {status.value: 0 for status in EmailStatus}
    counts.update({str(status): n for status, n in rows})
    counts["rolled_back_users_in_db"] = int(has_mallory or 0)
    return counts


def run_demo(database: str = DEMO_DATABASE) -> int:
    settings = get_settings()
    server = database_url(settings)
    check_connection(server)
    url = create_database(server, database)
    migrate(url)
    outbox = (settings.JOBS_DATA_DIR / "outbox").resolve()
    with Sink(outbox=outbox) as sink:
        _point_at(url, sink)
        created, existing = _register_sync(url)
        a_created, a_existing = asyncio.run(_register_async_and_work(url))
        created, existing = created + a_created, existing + a_existing
        delivered = len(sink.messages)
    ledger = _ledger(url)
    _print_summary(created, existing, delivered, ledger, outbox)
    print(f"  database               : {database} on {describe_server(url)}\n")
    return 0


def _print_summary(
    created: int, existing: int, delivered: int, ledger: dict[str, int], outbox: Path
) -> None:
    print()
    print("jobs demo")
    print(f"  users created this run : {created} (already there: {existing})")
    print(
        f"  rolled-back sign-up    : {ROLLED_BACK[1]} -> no user row, no email (users in db: "
        f"{ledger['rolled_back_users_in_db']})"
    )
    print(f"  emails delivered now   : {delivered}")
    print(
        "  ledger                 : "
        + ", ".join(f"{s.value} {ledger[s.value]}" for s in EmailStatus)
    )
    print(f"  open them              : {outbox}/*.eml")
