"""Provider payloads as `jobs.feedback.events.Event`s: SES (inside SNS), Postmark,
and the generic signed JSON format.

Each function takes the decoded JSON and returns the events it reports (possibly
none: a delivery notice, an open, a type `jobs` does not act on); a payload
that is not what the provider sends raises `InvalidPayload`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jobs.errors import JobsError
from jobs.feedback.events import Event
from jobs.feedback.reports import COMPLAINT, HARD_BOUNCE, KINDS, SOFT_BOUNCE


class InvalidPayload(JobsError, ValueError):
    """A webhook body that is not the provider's format."""


def as_object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidPayload(f"{what} is not a JSON object")
    return value


def ses(sns_message_id: str, message: str) -> list[Event]:
    """An SES notification (the SNS ``Message``, itself JSON)."""
    try:
        body = as_object(json.loads(message), "the SES notification")
    except json.JSONDecodeError:
        raise InvalidPayload("the SES notification is not JSON") from None
    kind = body.get("notificationType") or body.get("eventType")
    mail = as_object(body.get("mail") or {}, "mail")
    headers = as_object(mail.get("commonHeaders") or {}, "mail.commonHeaders")
    original = headers.get("messageId")
    if kind == "Bounce":
        bounce = as_object(body.get("bounce"), "bounce")
        event_kind = HARD_BOUNCE if bounce.get("bounceType") == "Permanent" else SOFT_BOUNCE
        recipients = [
            as_object(r, "bouncedRecipients[]") for r in bounce.get("bouncedRecipients") or []
        ]
        return [
            Event(
                provider="ses",
                event_id=f"{sns_message_id}#{r.get('emailAddress')}",
                kind=event_kind,
                address=str(r.get("emailAddress") or "") or None,
                raw=message,
                detail=" ".join(
                    str(x)
                    for x in (bounce.get("bounceSubType"), r.get("status"), r.get("diagnosticCode"))
                    if x
                )
                or None,
                original_message_id=str(original) if original else None,
            )
            for r in recipients
        ]
    if kind == "Complaint":
        complaint = as_object(body.get("complaint"), "complaint")
        recipients = [
            as_object(r, "complainedRecipients[]")
            for r in complaint.get("complainedRecipients") or []
        ]
        return [
            Event(
                provider="ses",
                event_id=f"{sns_message_id}#{r.get('emailAddress')}",
                kind=COMPLAINT,
                address=str(r.get("emailAddress") or "") or None,
                raw=message,
                detail=str(complaint.get("complaintFeedbackType") or "complaint"),
                original_message_id=str(original) if original else None,
            )
            for r in recipients
        ]
    return []


# Postmark bounce types (https://postmarkapp.com/developer/api/bounce-api).
_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError"}
_POSTMARK_COMPLAINT = {"SpamComplaint", "SpamNotification"}


def postmark(raw: str, body: Mapping[str, Any]) -> list[Event]:
    """A Postmark bounce or spam-complaint webhook."""
    record_type = body.get("RecordType")
    if record_type not in ("Bounce", "SpamComplaint"):
        return []
    bounce_type = str(body.get("Type") or "")
    if record_type == "SpamComplaint" or bounce_type in _POSTMARK_COMPLAINT:
        kind = COMPLAINT
    elif bounce_type in _POSTMARK_HARD:
        kind = HARD_BOUNCE
    elif bounce_type in _POSTMARK_SOFT:
        kind = SOFT_BOUNCE
    else:
        return []
    if body.get("ID") is None or not body.get("Email"):
        raise InvalidPayload("a Postmark record needs ID and Email")
    return [
        Event(
            provider="postmark",
            event_id=str(body["ID"]),
            kind=kind,
            address=str(body["Email"]),
            raw=raw,
            detail=" ".join(
                str(x) for x in (bounce_type, body.get("Description"), body.get("Details")) if x
            )
            or None,
        )
    ]


def generic(raw: str, body: Any) -> list[Event]:
    """``{"id", "type": hard_bounce|soft_bounce|complaint, "address", "message_id"?,
    "detail"?}``, or a list of them."""
    items = body if isinstance(body, list) else [body]
    events: list[Event] = []
    for item in items:
        entry = as_object(item, "an event")
        kind, event_id, address = entry.get("type"), entry.get("id"), entry.get("address")
        if kind not in KINDS or not event_id or not (address or entry.get("message_id")):
            raise InvalidPayload(
                f"an event needs id, type (one of {', '.join(KINDS)}) and address or message_id"
            )
        events.append(
            Event(
                provider="webhook",
                event_id=str(event_id),
                kind=str(kind),
                address=str(address) if address else None,
                raw=raw,
                detail=str(entry["detail"]) if entry.get("detail") else None,
                original_message_id=str(entry["message_id"]) if entry.get("message_id") else None,
            )
        )
    return events
