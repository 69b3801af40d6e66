"""What the SMTP client puts on the wire: message content and envelope addresses."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.mail.smtp_connection import _mailbox, _message_body

# Lines made of the bytes that matter here: dots, CR, LF and something else.
lines = st.lists(st.binary(max_size=6).map(lambda b: bytes(c % 4 for c in b)), max_size=12)
_BYTES = bytes.maketrans(b"\0\1\2\3", b".\r\nx")
content = lines.map(lambda parts: b"".join(parts).translate(_BYTES))


def _received(body: bytes) -> bytes:
    """What a server stores: the lines up to the lone dot, each leading dot removed."""
    assert body.endswith(b"\r\n.\r\n") or body == b".\r\n"
    stored = [line[1:] if line.startswith(b".") else line for line in body.split(b"\r\n")[:-2]]
    return b"".join(line + b"\r\n" for line in stored)


@given(content)
def test_any_content_arrives_as_sent_with_crlf_line_ends(data: bytes) -> None:
    body = _message_body(data)
    assert b"." not in body.split(b"\r\n")[:-2]  # the only lone dot is the last line
    assert re.search(rb"(?<!\r)\n|\r(?!\n)", body) is None  # no bare CR or LF
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines[-1] == b"":
        lines.pop()
    assert _received(body) == b"".join(line + b"\r\n" for line in lines)


@pytest.mark.parametrize(
    "address", ["a@b.example\r\nRCPT TO:<x@y>", "a b@example.com", "<a@b>", "", "a\0@b"]
)
def test_an_address_that_would_change_the_command_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        _mailbox(address, smtputf8=True)


def test_a_non_ascii_address_needs_smtputf8() -> None:
    assert _mailbox("jörg@example.com", smtputf8=True) == "<jörg@example.com>".encode()
    with pytest.raises(ValueError, match="SMTPUTF8"):
        _mailbox("jörg@example.com", smtputf8=False)
