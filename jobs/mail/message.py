"""Building a message: headers checked, text and HTML parts, stable Message-ID.

`build_wire` writes the ``multipart/alternative`` message straight to its wire
form, with the stdlib's encoders (RFC 2047 headers, quoted-printable bodies):
that is what delivery sends, and it costs a small fraction of building an
`email.message.EmailMessage` and flattening it again. `build_message` returns
the very same bytes parsed as an `EmailMessage`, for callers who want one.
"""

from __future__ import annotations

import binascii
import email
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate

from jobs.errors import HeaderInjection
from jobs.mail.address import wire_address

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322: printable ASCII except ':'
_NEWLINES = re.compile(rb"\r\n|\r|\n")
MAX_LINE = 998  # RFC 5322 line limit, without CRLF
_LONG_LINE = re.compile(rb"[^\n]{%d}" % (MAX_LINE + 1))


@dataclass(frozen=True)
class Outgoing:
    """A message ready for SMTP: the envelope and the bytes of the message."""

    sender: str
    recipient: str
    data: bytes
    message_id: str

    @property
    def smtputf8(self) -> bool:
        """Whether an address needs an SMTPUTF8 server (non-ASCII local part)."""
        return not (self.sender.isascii() and self.recipient.isascii())


def check_header(name: str, value: str) -> str:
    """Reject CR/LF and every other control character in a header value."""
    if _CONTROL.search(value):
        raise HeaderInjection(f"header {name} contains a control character (CR/LF?)")
    return value


def message_id_for(idempotency_key: str, sender: str) -> str:
    """The same key always yields the same Message-ID, so retries are recognisable."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{digest}@{domain}>"


def _header(name: str, value: str) -> str:
    if value.isascii() and len(name) + len(value) + 2 <= MAX_LINE:
        return f"{name}: {value}\r\n"
    charset = "us-ascii" if value.isascii() else "utf-8"  # RFC 2047 when not ASCII
    folded = Header(value, charset, header_name=name).encode(splitchars=" ", linesep="\r\n")
    return f"{name}: {folded}\r\n"


def _part(subtype: str, body: str) -> bytes:
    data = _NEWLINES.sub(b"\n", body.encode("utf-8"))
    if data.isascii() and not _LONG_LINE.search(data):
        encoding = "7bit"
    else:
        encoding, data = "quoted-printable", binascii.b2a_qp(data, istext=True)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode()
        + data.replace(b"\n", b"\r\n")
        + b"\r\n"
    )


def build_wire(
    *,
    sender: str,
    sender_name: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    headers: Mapping[str, str] | None = None,
) -> Outgoing:
    """A ``multipart/alternative`` message (text first, then HTML), as bytes.

    Raises `HeaderInjection` for a control character in any header value (or a
    bad header name) and `InvalidEmailAddress` for a recipient email-validator refuses.
    """
    extra = dict(headers or {})
    values = {"From": sender, "From name": sender_name, "To": to, "Subject": subject}
    for name, value in {**values, "Message-ID": message_id, **extra}.items():
        check_header(name, value)
    for name in extra:
        if not _FIELD_NAME.fullmatch(name):
            raise HeaderInjection(f"invalid header name {name!r}")
    recipient = wire_address(to)
    head = (
        _header("From", formataddr((sender_name, sender), charset="utf-8"))
        + _header("To", recipient)
        + _header("Subject", subject)
        + _header("Date", formatdate(usegmt=True))
        + _header("Message-ID", message_id)
        + "".join(_header(name, value) for name, value in extra.items())
    )
    parts = [_part("plain", text), _part("html", html)]
    boundary = f"==jobs-{secrets.token_hex(12)}=="
    while any(boundary.encode() in part for part in parts):  # pragma: no cover - 2**-96
        boundary = f"==jobs-{secrets.token_hex(12)}=="
    delimiter = f"--{boundary}\r\n".encode()
    data = (
        head.encode("utf-8")
        + b"MIME-Version: 1.0\r\n"
        + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode()
        + b"".join(delimiter + part for part in parts)
        + f"--{boundary}--\r\n".encode()
    )
    return Outgoing(sender=sender, recipient=recipient, data=data, message_id=message_id)


def build_message(
    *,
    sender: str,
    sender_name: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """`build_wire`'s message as an `EmailMessage` (what the receiver parses)."""
    outgoing = build_wire(
        sender=sender,
        sender_name=sender_name,
        to=to,
        subject=subject,
        text=text,
        html=html,
        message_id=message_id,
        headers=headers,
    )
    parsed = email.message_from_bytes(outgoing.data, policy=SMTP)
    assert isinstance(parsed, EmailMessage)
    return parsed
