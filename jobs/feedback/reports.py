"""Reading bounce and complaint reports with the stdlib `email` package.

- A delivery status notification (RFC 3464, ``multipart/report;
  report-type=delivery-status``) has one block of fields per recipient:
  ``Action: failed`` with a 5.x.x status is a hard bounce (except 5.2.2,
  mailbox full, which may clear), a failure with 4.x.x or ``Action: delayed``
  is a soft bounce; ``delivered``/``relayed``/``expanded`` are not bounces.
- A feedback report (ARF, RFC 5965, ``report-type=feedback-report``) is a
  complaint about the message it quotes.

Both usually quote the original message (or its headers) in a third part;
its Message-ID matches the ledger row when the return path does not.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
from dataclasses import dataclass
from email.message import Message

HARD_BOUNCE = "hard_bounce"
SOFT_BOUNCE = "soft_bounce"
COMPLAINT = "complaint"
KINDS = (HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT)


@dataclass(frozen=True)
class Report:
    """One bounce or complaint about one recipient, as read from a report."""

    event_id: str
    kind: str
    address: str | None
    detail: str | None
    original_message_id: str | None


def _typed_value(value: str | None) -> str:
    """The value of a typed field: ``smtp; 550 5.1.1 ...`` → ``550 5.1.1 ...``."""
    value = " ".join((value or "").split())
    return value.partition(";")[2].strip() if ";" in value else value


def _field_address(value: str | None) -> str | None:
    """``rfc822; someone@example.com`` → ``someone@example.com``."""
    return _typed_value(value).strip("<>").strip() or None


def bounce_kind(action: str, status: str) -> str | None:
    """The kind of one DSN recipient block (None: not a bounce)."""
    action = action.strip().lower()
    status = status.strip().split()[0] if status.strip() else ""
    if action == "delayed":
        return SOFT_BOUNCE
    if action != "failed":
        return None
    if status.startswith("5.") and status != "5.2.2":
        return HARD_BOUNCE
    return SOFT_BOUNCE


def _original(parts: list[Message]) -> Message | None:
    for part in parts:
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                inner = payload[0]
                return inner if isinstance(inner, Message) else None
        if content_type in ("text/rfc822-headers", "text/global-headers"):
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return email.message_from_bytes(text, policy=email.policy.compat32)
    return None


def _event_base(report: Message, raw: bytes) -> str:
    own = (report.get("Message-ID") or "").strip()
    return own or "sha256:" + hashlib.sha256(raw).hexdigest()


def parse(raw: bytes) -> list[Report]:
    """Every bounce or complaint ``raw`` reports; [] if it is neither a DSN nor an ARF."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if message.get_content_type() != "multipart/report":
        return []
    report_type = str(message.get_param("report-type") or "").lower()
    payload = message.get_payload()
    parts = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    original = _original(parts)
    original_id = (original.get("Message-ID") or "").strip() or None if original else None
    base = _event_base(message, raw)
    if report_type == "delivery-status":
        return _dsn(parts, base, original_id)
    if report_type == "feedback-report":
        return _arf(parts, base, original, original_id)
    return []


def _dsn(parts: list[Message], base: str, original_id: str | None) -> list[Report]:
    reports: list[Report] = []
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:  # the first block is about the message, the rest per recipient
            if not isinstance(block, Message):
                continue
            kind = bounce_kind(block.get("Action", ""), block.get("Status", ""))
            address = _field_address(block.get("Final-Recipient")) or _field_address(
                block.get("Original-Recipient")
            )
            if kind is None:
                continue
            status = block.get("Status", "").strip()
            diagnostic = _typed_value(block.get("Diagnostic-Code"))
            detail = " ".join(filter(None, [status, diagnostic])) or None
            reports.append(
                Report(f"{base}#{address or len(reports)}", kind, address, detail, original_id)
            )
    return reports


def _arf(
    parts: list[Message], base: str, original: Message | None, original_id: str | None
) -> list[Report]:
    fields: Message | None = None
    for part in parts:
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                fields = payload[0]
            elif isinstance(payload, str):
                fields = email.message_from_string(payload, policy=email.policy.compat32)
    if fields is None:
        return []
    address = _field_address(fields.get("Original-Rcpt-To"))
    if address is None and original is not None:
        address = _field_address(original.get("To"))
    feedback_type = (fields.get("Feedback-Type") or "abuse").strip().lower()
    agent = (fields.get("User-Agent") or "").strip()
    detail = f"{feedback_type} report" + (f" from {agent}" if agent else "")
    return [Report(f"{base}#{address or 0}", COMPLAINT, address, detail, original_id)]
