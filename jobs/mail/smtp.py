"""Talking to the SMTP server: connect, send, classify failures.

A refusal the server means (5xx), or a message this server cannot take at all
(an address that cannot go on the wire, SMTPUTF8 unsupported), raises
`Rejected`; a 4xx for this one message (greylisting, a full mailbox) raises
`Deferred`: the connection is fine, the other messages go on. Everything else —
421, 503 and 530 (about the session), timeouts, dropped connections — propagates
as trouble with the server itself.
"""

from __future__ import annotations

from jobs.errors import describe
from jobs.mail.config import SmtpConfig
from jobs.mail.message import Outgoing
from jobs.mail.smtp_connection import NotSupported, ReplyError, SmtpConnection, SmtpError

# What a retry may heal: SMTP 4xx, timeouts, refused or dropped connections.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (SmtpError, OSError, TimeoutError)


class Rejected(Exception):
    """This message can never be sent as it is (5xx, unsendable address)."""


class Deferred(Exception):
    """The server refused this message for now (4xx for it): try it again later."""


class SlowDown(Deferred):
    """The receiver asked to slow down (421/451 4.7.x, 454): lower its domain's budget."""


def _slow_down(code: int, message: str) -> bool:
    return code == 454 or (code in (421, 451) and message.lstrip().startswith("4.7."))


# 5xx replies about the session, not the message: "authentication required" (a login
# that expired, or MAIL_USERNAME missing) and "bad sequence of commands". Failing the
# message for good would fail every queued one the same way; they are retried instead.
_ABOUT_THE_SESSION = (503, 530)


def _for_this_message(code: int) -> bool:
    """A 4xx about this message; 421 means the server is closing the connection."""
    return 400 <= code < 500 and code != 421


def client(config: SmtpConfig) -> SmtpConnection:
    """An unconnected client for ``config``; TLS mode and timeouts applied.

    ``starttls`` is always explicit: True insists on STARTTLS (no silent
    fallback to plain text), False never upgrades.
    """
    return SmtpConnection(config)


async def send(connection: SmtpConnection, message: Outgoing) -> str:
    """Send one message on a connected client; the server's answer to its content.

    Raises `Rejected` on a 5xx, or when the message needs SMTPUTF8 (a non-ASCII
    address, written in UTF-8 as RFC 6532 wants) and the server does not offer it.
    """
    try:
        return await connection.send(
            message.sender, message.recipient, message.data, smtputf8=message.smtputf8
        )
    except NotSupported as exc:
        address = next(
            (a for a in (message.recipient, message.sender) if not a.isascii()), "Reply-To"
        )
        raise Rejected(
            f"the server does not support SMTPUTF8, which the non-ASCII address "
            f"{address} needs (it cannot be written in ASCII)"
        ) from exc
    except ValueError as exc:  # an address that cannot go on the wire
        raise Rejected(describe(exc)) from exc
    except ReplyError as exc:
        if _slow_down(exc.code, exc.message):
            raise SlowDown(str(exc)) from exc
        if exc.code in _ABOUT_THE_SESSION:
            raise
        if 500 <= exc.code < 600:
            raise Rejected(str(exc)) from exc
        if _for_this_message(exc.code):
            raise Deferred(str(exc)) from exc
        raise
