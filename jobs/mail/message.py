"""Building a message: headers checked and encoded exactly, text and HTML parts, stable Message-ID.

`build_wire` writes the ``multipart/alternative`` message straight to its wire
form: that is what delivery sends, and it costs a small fraction of building an
`email.message.EmailMessage` and flattening it again. `build_message` returns
the very same bytes parsed as an `EmailMessage`, for callers who want one.

The header rules, written here by hand because the stdlib's encoders break them
(`email.header.Header` makes 76-character encoded-words and folds addresses
into encoded-words):

- a value that survives verbatim (printable ASCII words separated by single
  spaces, no ``=?``) is written as is, folded before a space so that lines stay
  within 78 characters where the words allow it;
- anything else (non-ASCII, U+2028 and other separators, runs of spaces, a word
  too long for a line, ``=?``) becomes RFC 2047 encoded-words (``B``, UTF-8) of
  at most 75 characters, split on character boundaries, one per line;
- addresses are never encoded-words: a non-ASCII local part is written in UTF-8
  (RFC 6532) and the message then needs an SMTPUTF8 server (`Outgoing.smtputf8`);
- no line is ever longer than 998 characters; ``Date`` has a numeric zone.
"""

from __future__ import annotations

import base64
import binascii
import email
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from jobs.errors import HeaderInjection, SubjectTooLong
from jobs.mail.address import wire_address

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FIELD_NAME = re.compile(r"[!-9;-~]{1,64}")  # RFC 5322: printable ASCII except ':'
_NEWLINES = re.compile(rb"\r\n|\r|\n")
MAX_LINE = 998  # RFC 5322 line limit, without CRLF
FOLD_AT = 78  # RFC 5322: lines SHOULD be at most 78 characters
MAX_ENCODED_WORD = 75  # RFC 2047 §2
MAX_SUBJECT_LENGTH = 500  # characters; longer subjects are refused at enqueue
_LONG_LINE = re.compile(rb"[^\n]{%d}" % (FOLD_AT + 1))  # body lines too: 78 (RFC 5322 §2.1.1)
_VERBATIM = re.compile(r"[!-~]+(?: [!-~]+)*")  # printable ASCII words, single spaces
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_SPACES = re.compile(r"\s{2,}")  # tab, CR and LF never get here: control characters are refused
_LIST_ITEMS = re.compile(r"(?<=>)\s*,\s*(?=<)")
_EW_PREFIX = "=?utf-8?b?"
_EW_OVERHEAD = len(_EW_PREFIX) + len("?=")

# Headers `jobs` writes itself: a caller's ``headers=`` may not set them.
OWNED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Sender",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Return-Path",
        "Received",
        "DKIM-Signature",
    )
)


@dataclass(frozen=True)
class Outgoing:
    """A message ready for SMTP: the envelope and the bytes of the message."""

    sender: str
    recipient: str
    data: bytes
    message_id: str
    smtputf8: bool = False  # an address needs an SMTPUTF8 server (non-ASCII local part)


def check_header(name: str, value: str) -> str:
    """Reject CR/LF and every other control character in a header value."""
    if _CONTROL.search(value):
        raise HeaderInjection(f"header {name} contains a control character (CR/LF?)")
    return value


def check_subject(subject: str) -> str:
    """A subject that can be sent: no control characters, at most `MAX_SUBJECT_LENGTH`."""
    check_header("Subject", subject)
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise SubjectTooLong(
            f"subject is {len(subject)} characters long; the most is {MAX_SUBJECT_LENGTH}"
        )
    try:
        subject.encode("utf-8")
    except UnicodeEncodeError:
        raise HeaderInjection("subject is not valid Unicode (a lone surrogate)") from None
    return subject


def check_extra_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A caller's extra headers: valid names, no control characters, none that `jobs` owns."""
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
            raise HeaderInjection(f"invalid header name {name!r}")
        if name.lower() in OWNED_HEADERS:
            raise HeaderInjection(f"header {name} is set by jobs and cannot be given")
        if name.lower() in seen:
            raise HeaderInjection(f"header {name} is given twice")
        if not isinstance(value, str):
            raise HeaderInjection(f"header {name} must be a string")
        seen.add(name.lower())
        checked[name] = check_header(name, value)
    return checked


def message_id_for(idempotency_key: str, sender: str, installation: str) -> str:
    """The same key always yields the same Message-ID, so retries are recognisable;
    ``installation`` (one random id per database) keeps two databases apart."""
    material = f"{installation}\x00{idempotency_key}".encode()
    digest = hashlib.sha256(material).hexdigest()[:40]
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{digest}@{domain}>"


def _encoded_words(value: str, first: int) -> list[str]:
    """``value`` as B encoded-words: the first at most ``first`` characters long,
    the others at most 75, each ending on a character boundary."""
    words: list[str] = []
    limit = first
    chunk = bytearray()
    room = 3 * ((limit - _EW_OVERHEAD) // 4)  # bytes that fit: base64 makes 4 of 3
    for char in value:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > room:
            words.append(_EW_PREFIX + base64.b64encode(chunk).decode() + "?=")
            chunk = bytearray()
            limit = MAX_ENCODED_WORD
            room = 3 * ((limit - _EW_OVERHEAD) // 4)
        chunk += data
    if chunk or not words:
        words.append(_EW_PREFIX + base64.b64encode(chunk).decode() + "?=")
    return words


def _fold(prefix: int, words: list[str]) -> str:
    """``words`` joined by single spaces, a line break before a space wherever the
    line (which starts ``prefix`` characters in) would pass 78 characters."""
    out = [words[0]]
    length = prefix + len(words[0])
    for word in words[1:]:
        if length + 1 + len(word) > FOLD_AT:
            out.append("\r\n " + word)
            length = 1 + len(word)
        else:
            out.append(" " + word)
            length += 1 + len(word)
    return "".join(out)


def _first_room(prefix: int) -> int:
    """How long the first encoded-word after ``prefix`` characters may be: what is left
    of 78, but room for one character at least (a long field name makes a longer line:
    starting on the next line would add a leading space that readers keep)."""
    return max(min(MAX_ENCODED_WORD, FOLD_AT - prefix), _EW_OVERHEAD + 8)


def _encoded(prefix: int, value: str) -> str:
    """``value`` as encoded-words, one per line, starting after ``prefix`` characters."""
    return "\r\n ".join(_encoded_words(value, _first_room(prefix)))


def _verbatim(name: str, value: str) -> bool:
    """Whether an unstructured ``value`` survives verbatim (and fits the line limit)."""
    if not _VERBATIM.fullmatch(value) or "=?" in value:
        return False
    if len(name) + 2 + len(value) <= MAX_LINE:
        return True
    return max(len(word) for word in value.split(" ")) + len(name) + 2 <= MAX_LINE


def unstructured(name: str, value: str) -> str:
    """The header line(s) of an unstructured field (Subject, a caller's header)."""
    prefix = len(name) + 2
    if _verbatim(name, value):
        if prefix + len(value) <= FOLD_AT:
            return f"{name}: {value}\r\n"
        return f"{name}: {_fold(prefix, value.split(' '))}\r\n"
    return f"{name}: {_encoded(prefix, value)}\r\n"


def _phrase(name: str, prefix: int) -> list[str]:
    """A display name as words for `_fold`: atoms, one quoted string, or encoded-words."""
    if len(name) <= 200 and _ATOMS.fullmatch(name) and "=?" not in name:
        return name.split(" ")
    if _VERBATIM.fullmatch(name) and "=?" not in name and prefix + len(name) + 2 <= FOLD_AT:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return [f'"{escaped}"']
    return _encoded_words(name, _first_room(prefix))


def _named(name: str, display_name: str, bracketed: str) -> str:
    """``Name: display name <...>``; runs of whitespace in ``display_name`` (Unicode's
    too) become one space, and it is stripped: readers do the same to a phrase
    (Python's reads " \\u00a0" as one space and drops a trailing U+0085)."""
    prefix = len(name) + 2
    display_name = _SPACES.sub(" ", display_name).strip()
    if not display_name:
        return f"{name}: {bracketed}\r\n"
    return f"{name}: {_fold(prefix, [*_phrase(display_name, prefix), bracketed])}\r\n"


def address_header(name: str, address: str, display_name: str = "") -> str:
    """The header line(s) of an address field; the address itself is never encoded."""
    if not display_name.strip():
        return f"{name}: {address}\r\n"
    return _named(name, display_name, f"<{address}>")


def list_id_header(name: str, value: str) -> str:
    """``List-Id: phrase <list.id>`` (RFC 2919): the phrase written like a display name."""
    if "<" not in value:
        return unstructured(name, value)
    phrase, _, ident = value.rpartition("<")
    return _named(name, phrase, "<" + ident)


def list_header(name: str, value: str) -> str:
    """A list of ``<URL>`` items (List-Unsubscribe): folded between items only, never
    inside a URL (a line stays longer than 78 when one URL is)."""
    items = [item.strip() for item in _LIST_ITEMS.split(value)]
    if any(" " in item for item in items):  # not a plain list of <URL>s
        return unstructured(name, value)
    words = [item + "," for item in items[:-1]] + [items[-1]]
    return f"{name}: {_fold(len(name) + 2, words)}\r\n"


_date_cache: tuple[int, str] = (0, "")


def _date() -> str:
    """``Date`` with a numeric zone (+0000), formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, format_datetime(datetime.fromtimestamp(now, UTC)))
    return _date_cache[1]


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


# Headers of ``headers=`` that `jobs` itself sets (reply_to, promotions) and how each is written.
_STRUCTURED = {
    "reply-to": lambda name, value: address_header(name, wire_address(value)),
    "list-unsubscribe": list_header,
    "list-id": list_id_header,
}


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
    reply_to: str | None = None,
) -> Outgoing:
    """A ``multipart/alternative`` message (text first, then HTML), as bytes.

    ``headers`` may carry ``Reply-To``, ``List-Id`` and ``List-Unsubscribe``
    (set by `jobs`) beside a caller's own. Raises `HeaderInjection` for a control
    character in any header value (or a bad header name), `SubjectTooLong`, and
    `InvalidEmailAddress` for an address email-validator refuses.
    """
    extra = dict(headers or {})
    if reply_to and not any(name.lower() == "reply-to" for name in extra):
        extra["Reply-To"] = reply_to
    check_subject(subject)
    for name, value in {"From": sender, "From name": sender_name, "To": to, **extra}.items():
        check_header(name, value)
    for name in extra:
        if not FIELD_NAME.fullmatch(name):
            raise HeaderInjection(f"invalid header name {name!r}")
    check_header("Message-ID", message_id)
    recipient = wire_address(to)
    envelope_sender = wire_address(sender)
    head = (
        address_header("From", envelope_sender, sender_name)
        + address_header("To", recipient)
        + unstructured("Subject", subject)
        + f"Date: {_date()}\r\nMessage-ID: {message_id}\r\n"
        + "".join(_STRUCTURED.get(n.lower(), unstructured)(n, v) for n, v in extra.items())
    )
    parts = [_part("plain", text), _part("html", html)]
    boundary = f"==jobs-{secrets.token_hex(12)}=="
    while any(boundary.encode() in part for part in parts):  # pragma: no cover - 2**-96
        boundary = f"==jobs-{secrets.token_hex(12)}=="
    delimiter = f"--{boundary}\r\n".encode()
    data = (
        head.encode("utf-8")
        + b"MIME-Version: 1.0\r\n"
        + f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode()
        + b"".join(delimiter + part for part in parts)
        + f"--{boundary}--\r\n".encode()
    )
    return Outgoing(
        sender=envelope_sender,
        recipient=recipient,
        data=data,
        message_id=message_id,
        smtputf8=not head.isascii(),  # only an address (From, To, Reply-To) can make it so
    )


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
    reply_to: str | None = None,
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
        reply_to=reply_to,
    )
    parsed = email.message_from_bytes(outgoing.data, policy=SMTP)
    assert isinstance(parsed, EmailMessage)
    return parsed
