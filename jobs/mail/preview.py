"""Looking at an email before anyone gets it: `jobs preview` and `jobs send-test`.

`preview` renders a template (or a campaign's promotion) exactly as delivery
would — subject, text, HTML and the whole message as an ``.eml`` — without
sending. `send_now` sends one such message through the configured server at
once, outside the queue, and returns the server's answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.errors import JobsError
from jobs.mail import smtp
from jobs.mail.config import MailConfig
from jobs.mail.message import Outgoing, build_wire, message_id_for
from jobs.mail.templates import render
from jobs.models import Campaign
from jobs.promotions.fanout import (
    PROMOTION_TEMPLATE,
    PromotionConfig,
    campaign_context,
    promotion_headers,
)

SAMPLE_TOKEN = "preview-token"  # unsubscribe links of a preview (no user behind them)


@dataclass(frozen=True)
class Preview:
    subject: str
    text: str
    html: str
    message: Outgoing

    @property
    def eml(self) -> bytes:
        return self.message.data


def preview(
    template: str,
    context: Mapping[str, Any],
    mail: MailConfig,
    *,
    to: str,
    headers: Mapping[str, str] | None = None,
    subject: str | None = None,
) -> Preview:
    """Render ``template`` with ``context`` and build the message delivery would send."""
    rendered = render(template, {**mail.template_globals, **context}, mail.template_dirs)
    subject = subject or rendered.subject
    if not subject:
        raise JobsError(f"template {template!r} sets no subject")
    message = build_wire(
        sender=mail.sender,
        sender_name=mail.sender_name,
        to=to,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(f"preview:{uuid.uuid4()}", mail.sender, "preview"),
        headers=headers,
        reply_to=mail.reply_to,
    )
    return Preview(subject=subject, text=rendered.text, html=rendered.html, message=message)


def preview_campaign(
    campaign: Campaign,
    config: PromotionConfig,
    mail: MailConfig,
    *,
    to: str,
    username: str = "Ann",
    token: str = SAMPLE_TOKEN,
    template: str = PROMOTION_TEMPLATE,
    context: Mapping[str, Any] | None = None,
) -> Preview:
    """The promotion of ``campaign`` as one recipient gets it (``token`` signs their
    link), with ``template`` and ``context`` laid over the campaign's own if given."""
    context = {
        **campaign_context(campaign, config),
        "username": username,
        "unsubscribe_url": config.token_prefix + token,
        **(context or {}),
    }
    return preview(
        template,
        context,
        mail,
        to=to,
        headers=promotion_headers(campaign, config, token),
        subject=campaign.subject,
    )


async def send_now(mail: MailConfig, message: Outgoing) -> str:
    """Send ``message`` through the configured server now; the server's answer.

    Raises `smtp.Rejected` / `smtp.Deferred` when the server refuses it, and the
    connection's own error when the server cannot be reached.
    """
    client = smtp.client(mail.smtp)
    await client.connect()
    try:
        return await smtp.send(client, message)
    finally:
        try:
            await client.quit()
        except smtp.TRANSIENT_ERRORS:
            client.close()
