"""Helpers for the web tests: users with unsubscribe tokens, failed jobs, campaigns."""

from __future__ import annotations

import psycopg

from jobs.db import session_factory
from jobs.models import User
from jobs.promotions.campaigns import add_campaign
from jobs.promotions.unsubscribe import make_token, signing_key
from jobs.settings import get_settings
from tests.conftest import queue_chunk

SECRET = "web-tests-secret-key-0123456789"
USER, PASSWORD = "ops", "correct horse battery staple"


def add_user(url: str, email: str, username: str = "ada") -> tuple[int, str]:
    """A user and the unsubscribe token of their address."""
    with session_factory(url)() as session, session.begin():
        user = User(email=email, username=username)
        session.add(user)
        session.flush()
        user_id = user.id
    return user_id, make_token(signing_key(get_settings()), user_id, email)


def unsubscribed(url: str, user_id: int) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT unsubscribed_at FROM users WHERE id = %s", (user_id,)).fetchone()
    assert row is not None
    return row[0] is not None


def failed_job(url: str, n: int = 1, *, key: str = "fail") -> int:
    """A delivery job of ``n`` emails that ended failed (as after its last attempt)."""
    _, job_id = queue_chunk(url, n, key=key)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (job_id,))
        conn.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (job_id,))
    return job_id


def job_status(url: str, job_id: int) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def campaign(url: str, name: str = "spring", subject: str = "Spring sale") -> None:
    with session_factory(url)() as session, session.begin():
        add_campaign(
            session,
            name=name,
            subject=subject,
            title="Thirty percent off",
            content="Everything in the shop, this week only.",
            link_path="/sale",
        )
