"""`jobs inbound`: DSNs and feedback reports sent over SMTP to a running listener."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from jobs.db import session_factory
from jobs.dev.sink import Sink, free_port
from jobs.feedback.verp import return_path, verp_key
from jobs.mail.enqueue import enqueue_email
from jobs.promotions.unsubscribe import signing_key
from jobs.settings import get_settings
from tests.conftest import count, drain, faults
from tests.workers import wait_until

SECRET = "test-secret-key-0123456789"
DOMAIN = "bounces.example.org"

DSN = """\
From: MAILER-DAEMON@mx.example.net
To: {rcpt}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {address}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{address}>: user unknown

--B
Content-Type: text/rfc822-headers

Message-ID: {message_id}
To: {address}

--B--
"""

ARF = """\
From: fbl@isp.example.net
To: {rcpt}
Subject: FW: promotion
Message-ID: <arf-1@isp.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: {address}

--F
Content-Type: message/rfc822

From: noreply@example.com
To: {address}
Subject: Special Promotion
Message-ID: {message_id}

hello
--F--
"""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _send(port: int, to: str, body: str) -> None:
    """What a remote MTA does: one message to ``to`` (stdlib smtplib, not our client)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as mta:
        mta.sendmail("mailer-daemon@mx.example.net", [to], body.replace("\n", "\r\n").encode())


def _welcome(url: str, to: str) -> int:
    with session_factory(url)() as session, session.begin():
        return enqueue_email(session, to=to, template="welcome", context={"username": "x"}).id


def _ledger(url: str, ledger_id: int) -> tuple[str | None, str | None]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT feedback, message_id FROM email_messages WHERE id = %s", (ledger_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_dsn_and_arf_over_smtp_suppress_and_mark_the_ledger_row(
    database_url: str, smtp: Sink, env: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("MAIL_BOUNCE_DOMAIN", DOMAIN)
    get_settings.cache_clear()
    bounced, complained = (
        _welcome(database_url, "gone@example.com"),
        _welcome(database_url, "angry@example.com"),
    )
    asyncio.run(drain())
    key = verp_key(signing_key(get_settings()))
    verp = return_path(key, bounced, DOMAIN)
    assert verp in faults(smtp).senders  # the envelope sender names the row

    port = free_port()
    log = (tmp_path / "inbound.log").open("w")
    inbound = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "inbound"],
        env={**os.environ, "INBOUND_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_until(lambda: _listening(port), "jobs inbound to listen")
        _, bounced_id = _ledger(database_url, bounced)
        _, complained_id = _ledger(database_url, complained)
        dsn = DSN.format(rcpt=verp, address="gone@example.com", message_id=bounced_id)
        _send(port, verp, dsn)
        _send(port, verp, dsn)  # a report sent twice is recorded once
        arf = ARF.format(
            rcpt=f"fbl@{DOMAIN}", address="angry@example.com", message_id=complained_id
        )
        _send(port, f"fbl@{DOMAIN}", arf)
        _send(port, f"x@{DOMAIN}", "Subject: out of office\n\nback monday\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            _send(port, "someone@example.com", dsn)  # not the bounce domain
        wait_until(
            lambda: count(database_url, "SELECT count(*) FROM suppressions") == 2,
            "both addresses suppressed",
        )
    finally:
        inbound.send_signal(signal.SIGTERM)
        assert inbound.wait(timeout=30) == 0
        log.close()
    with psycopg.connect(database_url) as conn:
        suppressed: dict[str, str] = dict(
            conn.execute("SELECT address, reason FROM suppressions").fetchall()
        )
    assert suppressed == {"gone@example.com": "hard_bounce", "angry@example.com": "complaint"}
    assert _ledger(database_url, bounced)[0] == "hard_bounce"
    assert _ledger(database_url, complained)[0] == "complaint"
    assert count(database_url, "SELECT count(*) FROM feedback_events") == 2
    assert "dropped a message" in (tmp_path / "inbound.log").read_text()
