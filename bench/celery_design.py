"""The original Celery design, reproduced for comparison (bench-only).

As in `shared/reference/celery-batch-design.md`: a Redis broker and result
backend, `send_promotion_emails` loads every active user and calls
`send_email_task.delay(...)` once per user, and each email task runs
`asyncio.run(send_email(...))`, which opens a new SMTP connection. Rendering
uses the same templates and message builder as `jobs`, so the comparison is
about the architecture, not the templating.

Transactional mail (a welcome email per sign-up) is one task per email too,
given its best chance: `send_transactional_email_task` keeps ONE SMTP
connection per worker process and reuses it (smtplib), as a tuned Celery
deployment would.

Workers: ``celery -A bench.celery_design worker -Q email_queue -c N``.
Configured from BENCH_REDIS_URL, BENCH_SMTP_HOST/PORT and DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
from datetime import datetime
from typing import Any

import aiosmtplib
from celery import Celery
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from jobs.db import sqlalchemy_url
from jobs.mail.message import build_message, message_id_for
from jobs.mail.templates import render, search_path
from jobs.models import User

logger = logging.getLogger(__name__)

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
FRONTEND_URL = "https://shop.example.com"

celery_app = Celery("original_design", broker=REDIS_URL, backend=REDIS_URL)
celery_app.conf.update(
    task_routes={
        "bench.celery_design.send_email_task": {"queue": "email_queue"},
        "bench.celery_design.send_transactional_email_task": {"queue": "email_queue"},
    },
    worker_max_tasks_per_child=1000,  # CELERY_MAX_TASKS_PER_CHILD
    worker_max_memory_per_child=200000,  # CELERY_MAX_MEMORY_PER_CHILD (KiB)
    worker_hijack_root_logger=False,
)


async def send_email(
    email_to: str, subject: str, template_name: str, template_data: dict[str, Any]
) -> None:
    rendered = render(template_name, template_data, search_path())
    message = build_message(
        sender="noreply@example.com",
        sender_name="jobs",
        to=email_to,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(f"celery:{email_to}", "noreply@example.com", "bench"),
    )
    await aiosmtplib.send(  # a new connection for every email
        message,
        hostname=os.environ.get("BENCH_SMTP_HOST", "127.0.0.1"),
        port=int(os.environ.get("BENCH_SMTP_PORT", "1025")),
        start_tls=False,
        timeout=30,
    )


@celery_app.task
def send_email_task(
    email_to: str, subject: str, template_name: str, template_data: dict[str, Any]
) -> None:
    try:
        asyncio.run(send_email(email_to, subject, template_name, template_data))
    except Exception:
        logger.exception("Failed to send email to %s", email_to)


_connection: smtplib.SMTP | None = None


def _reused_connection() -> smtplib.SMTP:
    """This worker process's one SMTP connection, opened on first use."""
    global _connection
    if _connection is None:
        _connection = smtplib.SMTP(
            os.environ.get("BENCH_SMTP_HOST", "127.0.0.1"),
            int(os.environ.get("BENCH_SMTP_PORT", "1025")),
            timeout=30,
        )
    return _connection


@celery_app.task
def send_transactional_email_task(
    email_to: str, subject: str, template_name: str, template_data: dict[str, Any]
) -> None:
    """One welcome email over the process's reused connection."""
    global _connection
    rendered = render(template_name, template_data, search_path())
    message = build_message(
        sender="noreply@example.com",
        sender_name="jobs",
        to=email_to,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(f"celery:{email_to}", "noreply@example.com", "bench"),
    )
    try:
        _reused_connection().send_message(message)
    except (smtplib.SMTPException, OSError):
        logger.exception("Failed to send email to %s", email_to)
        _connection = None


@celery_app.task
def send_promotion_emails() -> dict[str, int]:
    engine = create_engine(sqlalchemy_url(os.environ["DATABASE_URL"]))
    db = sessionmaker(engine)()
    try:
        users = db.scalars(select(User).where(User.is_active.is_(True))).all()
        success_count = error_count = 0
        for user in users:
            try:
                template_data = {
                    "username": user.username,
                    "current_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                    "promotion_title": "Special Offer Today!",
                    "promotion_content": "Get 50% off on all products!",
                    "promotion_link": f"{FRONTEND_URL}/promotions",
                    "frontend_url": FRONTEND_URL,
                    "unsubscribe_url": f"{FRONTEND_URL}/unsubscribe",
                }
                send_email_task.delay(
                    email_to=user.email,
                    subject="Special Promotion Just For You!",
                    template_name="promotion",
                    template_data=template_data,
                )
                success_count += 1
            except Exception:
                error_count += 1
        return {
            "success_count": success_count,
            "error_count": error_count,
            "total_users": len(users),
        }
    finally:
        db.close()
        engine.dispose()
