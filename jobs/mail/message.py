"""Building a MIME message: headers checked, text and HTML parts, stable Message-ID."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import formatdate

from jobs.errors import HeaderInjection


def check_header(name: str, value: str) -> str:
    """Reject CR/LF and every other control character in a header value."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise HeaderInjection(f"header {name} contains a control character (CR/LF?)")
    return value


class _Verbatim(str):
    """An ASCII header value emitted exactly as given.

    The default policy would fold a long URI (``List-Unsubscribe: <https://...>``)
    into RFC 2047 encoded-words, which mail clients do not decode in URIs. An
    object with ``name`` and ``fold()`` is a header object to `email.policy`, so
    it is written as is (control characters were rejected by `check_header`).
    """

    name: str

    def __new__(cls, name: str, value: str) -> _Verbatim:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def message_id_for(idempotency_key: str, sender: str) -> str:
    """The same key always yields the same Message-ID, so retries are recognisable."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{digest}@{domain}>"


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
    """A ``multipart/alternative`` message (text first, then HTML)."""
    values = {
        "From": sender,
        "From name": sender_name,
        "To": to,
        "Subject": subject,
        "Message-ID": message_id,
        **(headers or {}),
    }
    for name, value in values.items():
        check_header(name, value)
    msg = EmailMessage(policy=SMTP)
    local, _, domain = sender.rpartition("@")
    msg["From"] = Address(display_name=sender_name, username=local, domain=domain)
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        if value.isascii() and len(name) + len(value) < 990:
            msg.set_raw(name, _Verbatim(name, value))
        else:
            msg[name] = value
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg
