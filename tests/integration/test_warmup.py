"""A starting worker opens its database and SMTP connections before the first job
(`jobs.worker.warmup`), and starts all the same when the SMTP server is away."""

from __future__ import annotations

import logging

import pytest

from jobs.db import session_factory
from jobs.dev.sink import Sink, free_port
from jobs.mail.enqueue import enqueue_email
from jobs.mail.pool import close_pool
from jobs.settings import get_settings
from jobs.worker.warmup import warm_up
from tests.conftest import drain, faults, set_env


async def test_the_first_email_goes_over_the_connection_opened_at_start(
    database_url: str, smtp: Sink
) -> None:
    await warm_up(get_settings(), database_url)
    assert smtp.handler.connections == 1  # before any email was queued
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(
            session, to="ada@example.com", template="welcome", context={"username": "Ada"}
        )
    await drain()
    assert len(faults(smtp).messages) == 1
    assert smtp.handler.connections == 1


async def test_a_worker_starts_while_the_smtp_server_is_away(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    set_env(monkeypatch, MAIL_SERVER="127.0.0.1", MAIL_PORT=str(port))
    with caplog.at_level(logging.WARNING, logger="jobs.worker.warmup"):
        await warm_up(get_settings(), database_url)
    await close_pool()
    [record] = caplog.records
    assert f"127.0.0.1:{port} not reachable yet" in record.getMessage()
