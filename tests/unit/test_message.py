"""Building a message: headers checked, encoded, validated — no SMTP needed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict

import pytest

from jobs.errors import HeaderInjection, InvalidEmailAddress
from jobs.mail.message import build_message, message_id_for


class MessageArgs(TypedDict):
    """`build_message`'s keyword arguments."""

    sender: str
    sender_name: str
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    headers: NotRequired[Mapping[str, str]]


class Overrides(TypedDict, total=False):
    """Any subset of `MessageArgs`, laid over `BASE`."""

    sender: str
    sender_name: str
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    headers: Mapping[str, str]


BASE: MessageArgs = {
    "sender": "noreply@example.com",
    "sender_name": "Shop",
    "to": "ann@example.com",
    "subject": "Hello",
    "text": "plain",
    "html": "<p>html</p>",
    "message_id": "<1@example.com>",
}


def test_structure_and_headers() -> None:
    msg = build_message(**BASE | {"subject": "Grüße", "headers": {"List-Id": "news"}})
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    wire = msg.as_bytes()
    assert b"From: Shop <noreply@example.com>" in wire
    assert b"Subject: =?utf-8?" in wire
    assert b"List-Id: news" in wire
    assert msg["Date"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "hi\r\nBcc: victim@example.com"},
        {"subject": "hi\nX: y"},
        {"sender_name": "Shop\r\nBcc: x@example.com"},
        {"headers": {"List-Id": "a\rb"}},
        {"headers": {"Bcc: x@example.com\r\nX": "y"}},
        {"subject": "nul\x00byte"},
    ],
)
def test_control_characters_in_headers_are_refused(overrides: Overrides) -> None:
    arguments: MessageArgs = {**BASE, **overrides}
    with pytest.raises(HeaderInjection):
        build_message(**arguments)


def test_an_invalid_recipient_is_refused() -> None:
    with pytest.raises(InvalidEmailAddress):
        build_message(**BASE | {"to": "ann@@example"})


def test_message_id_depends_on_the_key_and_the_installation() -> None:
    one = message_id_for("welcome:1", "a@example.com", "install-a")
    assert one == message_id_for("welcome:1", "a@example.com", "install-a")
    assert one != message_id_for("welcome:2", "a@example.com", "install-a")
    assert one != message_id_for("welcome:1", "a@example.com", "install-b")
    assert one.endswith("@example.com>")
