"""Built messages against the RFCs: arbitrary subjects, names and addresses, parsed strictly.

Each message is parsed with `email.policy.strict` (RFC 6532 messages as UTF-8
text) and checked for the limits mailbox providers enforce: lines of at most
998 characters (78 wherever there is whitespace to fold at), encoded-words of
at most 75 characters, no encoded address, a numeric ``Date`` zone, and the
subject and display name read back exactly as given.
"""

from __future__ import annotations

import email
import re
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import strict

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobs.errors import HeaderInjection, SubjectTooLong
from jobs.mail.message import MAX_SUBJECT_LENGTH, Outgoing, build_wire, message_id_for

ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")

# Header text: any Unicode but control characters (which are refused) and surrogates.
header_text = st.text(
    st.characters(min_codepoint=32, blacklist_categories=["Cs"], blacklist_characters="\x7f"),
    max_size=300,
)
local_parts = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,30}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
) | st.sampled_from(["ñandú", "用户", "josé.garcía", "δοκιμή"])
domains = st.sampled_from(["example.com", "mail.example.org", "bücher.example", "例え.jp"])


def build(subject: str, name: str, to: str, extra: dict[str, str] | None = None) -> Outgoing:
    return build_wire(
        sender="noreply@example.com",
        sender_name=name,
        to=to,
        subject=subject,
        text="plain " * 40,
        html="<p>" + "html " * 100 + "</p>",
        message_id=message_id_for("k", "noreply@example.com", "install"),
        headers=extra,
        reply_to="support@example.com",
    )


def parse(outgoing: Outgoing) -> EmailMessage:
    if outgoing.smtputf8:  # RFC 6532: UTF-8 header text
        parsed = email.message_from_string(outgoing.data.decode("utf-8"), policy=strict)
    else:
        parsed = email.message_from_bytes(outgoing.data, policy=strict)
    assert isinstance(parsed, EmailMessage)
    return parsed


def display_name(outgoing: Outgoing, parsed: Address) -> str:
    """The From display name as RFC 2047 §6.2 reads it.

    Python's address parser keeps the space between two adjacent encoded-words
    of a phrase, which the RFC says to drop (its unstructured parser drops it);
    a long name, split across encoded-words, is read with `decode_header` instead.
    """
    head = outgoing.data.split(b"\r\n\r\n", 1)[0].decode("utf-8").replace("\r\n ", " ")
    value = next(line for line in head.split("\r\n") if line.startswith("From: "))[6:]
    phrase = value.rpartition(" <")[0]
    if phrase.count("=?") > 1:
        return str(make_header(decode_header(phrase)))
    return parsed.display_name


def check_limits(outgoing: Outgoing) -> None:
    head, body = outgoing.data.split(b"\r\n\r\n", 1)
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))
    lines = head.split(b"\r\n")
    for line in lines:
        assert len(line) <= 998
        for word in ENCODED_WORD.findall(line):
            assert len(word) <= 75, word
        if len(line) > 78:  # only where there was no whitespace to fold at
            body = line.split(b": ", 1)[-1].strip()
            assert b" " not in body, line
    assert not outgoing.smtputf8 or head.decode("utf-8")
    if not outgoing.smtputf8:
        assert head.isascii()
    for line in lines:
        if line.startswith((b"To:", b"Reply-To:")):
            assert not ENCODED_WORD.search(line)
    date = next(line for line in lines if line.startswith(b"Date:"))
    assert date.endswith(b"+0000")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=header_text.filter(lambda s: len(s) <= MAX_SUBJECT_LENGTH),
    name=header_text,
    local=local_parts,
    domain=domains,
)
@example(subject="x" * 500, name="n" * 300, local="a", domain="example.com")
@example(subject="a\u2028b\x85c", name="Shop", local="a", domain="example.com")
@example(subject="=?utf-8?b?SGVsbG8=?=", name="=?utf-8?q?x?=", local="a", domain="example.com")
@example(subject="  two  spaces ", name=' "quoted" \\ ', local="a", domain="example.com")
@example(subject="€" * 500, name="€" * 300, local="ñandú", domain="例え.jp")
@example(subject="", name="0\x80 \x85", local="ñandú", domain="example.com")
@example(subject="", name="00000\x80\x80 \xa0\x80\x80", local="ñandú", domain="example.com")
def test_any_message_parses_strictly_within_the_limits(
    subject: str, name: str, local: str, domain: str
) -> None:
    outgoing = build(subject, name, f"{local}@{domain}")
    check_limits(outgoing)
    parsed = parse(outgoing)
    assert str(parsed["Subject"]) == subject
    [sender] = parsed["From"].addresses
    assert isinstance(sender, Address)
    assert display_name(outgoing, sender) == re.sub(r"\s{2,}", " ", name).strip()
    assert sender.addr_spec == "noreply@example.com"
    [recipient] = parsed["To"].addresses
    assert recipient.addr_spec == outgoing.recipient
    for header in ("Subject", "From", "To", "Reply-To", "Date", "Message-ID"):
        defects = [type(d).__name__ for d in parsed[header].defects]
        allowed = {"NonASCIILocalPartDefect"} if outgoing.smtputf8 else set()
        assert set(defects) <= allowed, (header, defects)
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]


@settings(max_examples=100, deadline=None)
@given(value=header_text.filter(bool), name=st.sampled_from(["X-Note", "X-" + "n" * 62]))
def test_a_callers_header_reads_back_exactly(value: str, name: str) -> None:
    outgoing = build("Hi", "Shop", "ann@example.com", {name: value})
    check_limits(outgoing)
    assert str(parse(outgoing)[name]) == value


def test_a_long_unbroken_ascii_subject_stays_under_998() -> None:
    outgoing = build("x" * MAX_SUBJECT_LENGTH, "Shop", "ann@example.com")
    check_limits(outgoing)
    assert str(parse(outgoing)["Subject"]) == "x" * MAX_SUBJECT_LENGTH


def test_a_plain_subject_and_name_are_sent_verbatim() -> None:
    head = build("Welcome, Ann!", "Shop", "ann@example.com").data.split(b"\r\n\r\n")[0]
    assert b"\r\nSubject: Welcome, Ann!\r\n" in head
    assert head.startswith(b"From: Shop <noreply@example.com>\r\n")
    assert b"\r\nReply-To: support@example.com\r\n" in head


def test_a_non_ascii_address_is_utf8_never_encoded() -> None:
    outgoing = build("Hi", "Shop", "ñandú@example.com")
    assert outgoing.smtputf8
    assert "To: ñandú@example.com\r\n".encode() in outgoing.data


def test_a_non_ascii_reply_to_needs_smtputf8_too() -> None:
    outgoing = build_wire(
        sender="noreply@example.com",
        sender_name="Shop",
        to="ann@example.com",
        subject="Hi",
        text="t",
        html="h",
        message_id="<1@example.com>",
        reply_to="josé@example.com",
    )
    assert outgoing.smtputf8
    assert "Reply-To: josé@example.com\r\n".encode() in outgoing.data


def test_an_idn_domain_goes_as_punycode_without_smtputf8() -> None:
    outgoing = build("Hi", "Shop", "ann@bücher.example")
    assert not outgoing.smtputf8
    assert b"To: ann@xn--bcher-kva.example\r\n" in outgoing.data


def test_list_unsubscribe_folds_after_its_comma() -> None:
    url = "<https://example.com/unsubscribe?token=" + "t" * 60 + ">"
    outgoing = build("Hi", "Shop", "a@example.com", {"List-Unsubscribe": f"{url}, <mailto:u@x>"})
    assert f"List-Unsubscribe: {url},\r\n <mailto:u@x>\r\n".encode() in outgoing.data
    comma = "<https://example.com/u?a=1,2>, <mailto:u@x>"
    outgoing = build("Hi", "Shop", "a@example.com", {"List-Unsubscribe": comma})
    assert f"List-Unsubscribe: {comma}\r\n".encode() in outgoing.data


def test_a_subject_over_the_maximum_is_refused() -> None:
    with pytest.raises(SubjectTooLong, match=str(MAX_SUBJECT_LENGTH)):
        build("x" * (MAX_SUBJECT_LENGTH + 1), "Shop", "a@example.com")


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(HeaderInjection):
        build("bad \udc80", "Shop", "a@example.com")
