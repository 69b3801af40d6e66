"""Talking to the SMTP server (aiosmtplib): connect, send, classify failures.

A refusal the server means (5xx), or a message this server cannot take at all
(an address aiosmtplib refuses, SMTPUTF8 unsupported), raises `Rejected`; a
4xx for this one message (greylisting, a full mailbox) raises `Deferred`: the
connection is fine, the other messages go on. Everything else — 421, timeouts,
dropped connections — propagates as trouble with the server itself.
"""

from __future__ import annotations

import aiosmtplib

from jobs.errors import describe
from jobs.mail.config import SmtpConfig
from jobs.mail.message import Outgoing

# What a retry may heal: SMTP 4xx, timeouts, refused or dropped connections.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    aiosmtplib.SMTPException,
    OSError,
    TimeoutError,
)


class Rejected(Exception):
    """This message can never be sent as it is (5xx, unsendable address)."""


class Deferred(Exception):
    """The server refused this message for now (4xx for it): try it again later."""


class SlowDown(Deferred):
    """The receiver asked to slow down (421/451 4.7.x, 454): lower its domain's budget."""


def _slow_down(code: int, message: str) -> bool:
    return code == 454 or (code in (421, 451) and message.lstrip().startswith("4.7."))


def _for_this_message(code: int) -> bool:
    """A 4xx about this message; 421 means the server is closing the connection."""
    return 400 <= code < 500 and code != 421


def client(config: SmtpConfig) -> aiosmtplib.SMTP:
    """An unconnected client for ``config``; TLS mode and timeouts applied.

    ``start_tls`` is always explicit: True insists on STARTTLS (no silent
    fallback to plain text), False never upgrades.
    """
    return aiosmtplib.SMTP(
        hostname=config.host,
        port=config.port,
        username=config.username or None,
        password=config.password.get_secret_value() if config.password else None,
        use_tls=config.ssl_tls,
        start_tls=bool(config.starttls),
        timeout=config.timeout,
    )


async def send(smtp: aiosmtplib.SMTP, message: Outgoing) -> str:
    """Send one message on a connected client; the server's answer to DATA.

    Raises `Rejected` on a 5xx, or when the message needs SMTPUTF8 (a non-ASCII
    address, written in UTF-8 as RFC 6532 wants) and the server does not offer it.
    """
    options = ["SMTPUTF8"] if message.smtputf8 else None
    try:
        _, answer = await smtp.sendmail(
            message.sender, [message.recipient], message.data, mail_options=options
        )
    except aiosmtplib.SMTPNotSupported as exc:
        if message.smtputf8:
            address = next(
                (a for a in (message.recipient, message.sender) if not a.isascii()), "Reply-To"
            )
            raise Rejected(
                f"the server does not support SMTPUTF8, which the non-ASCII address "
                f"{address} needs (it cannot be written in ASCII)"
            ) from exc
        raise Rejected(describe(exc)) from exc
    except ValueError as exc:  # an address aiosmtplib will not put on the wire
        raise Rejected(describe(exc)) from exc
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        reason = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if any(_slow_down(r.code, r.message) for r in exc.recipients):
            raise SlowDown(reason) from exc
        if all(500 <= code < 600 for code in codes):
            raise Rejected(reason) from exc
        if all(_for_this_message(code) or code >= 500 for code in codes):
            raise Deferred(reason) from exc
        raise
    except aiosmtplib.SMTPResponseException as exc:
        if _slow_down(exc.code, exc.message):
            raise SlowDown(f"{exc.code} {exc.message}") from exc
        if 500 <= exc.code < 600:
            raise Rejected(f"{exc.code} {exc.message}") from exc
        if _for_this_message(exc.code):
            raise Deferred(f"{exc.code} {exc.message}") from exc
        raise
    return answer
