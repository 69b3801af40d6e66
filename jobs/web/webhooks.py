"""Bounce and complaint webhooks: Amazon SES (via SNS), Postmark, and a generic
signed JSON endpoint for any other provider.

- ``POST /webhooks/ses``: an SNS message; its signature is verified
  (`jobs.feedback.sns`) before anything else, a bad one is 403. A
  ``SubscriptionConfirmation`` is confirmed by fetching its SubscribeURL (which
  must match SES_CERT_URL_PATTERN too); a ``Notification`` carries the SES
  bounce or complaint.
- ``POST /webhooks/postmark``: Postmark's bounce and spam-complaint webhooks,
  authenticated by HTTP basic auth whose password is POSTMARK_WEBHOOK_SECRET
  (put it in the webhook URL, ``https://postmark:SECRET@host/webhooks/postmark``);
  401 without it.
- ``POST /webhooks/feedback``: JSON events (`jobs.feedback.providers.generic`)
  signed with ``X-Jobs-Signature: sha256=<hex HMAC-SHA256 of the raw body with
  WEBHOOK_SECRET>``; 401 without a signature, 403 with a wrong one.

An endpoint whose secret is not configured answers 503. Every event is
recorded in one transaction per request (`jobs.feedback.events.record`); a
provider retrying the same event changes nothing. Settings are read per
request (the edge); nothing here is cached but SNS certificates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from jobs.db import async_session_factory, database_url
from jobs.feedback import config, events, providers, sns
from jobs.feedback.events import Event
from jobs.settings import get_settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
SIGNATURE_HEADER = "X-Jobs-Signature"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> bytes | None:
    """The raw body, or None when it is larger than `MAX_BODY_BYTES` (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _record(found: Sequence[Event]) -> JSONResponse:
    settings = get_settings()
    policy = config.policy(settings)
    recorded = duplicates = 0
    async with async_session_factory(database_url(settings))() as session, session.begin():
        for event in found:
            result = await events.record(session, event, policy)
            if result.event_id is None:
                duplicates += 1
            else:
                recorded += 1
    return JSONResponse({"recorded": recorded, "duplicates": duplicates})


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise providers.InvalidPayload("the body is not JSON") from None


def webhook_routes(*, certificates: sns.CertificateSource | None = None) -> list[BaseRoute]:
    """The webhook routes; ``certificates`` fetches SNS signing certificates
    (default: over HTTPS, from allow-listed URLs only)."""
    verifiers: dict[str, sns.Verifier] = {}

    def verifier(pattern: str) -> sns.Verifier:
        if pattern not in verifiers:
            verifiers[pattern] = sns.Verifier(pattern, certificates or sns.fetch)
        return verifiers[pattern]

    async def ses(request: Request) -> JSONResponse:
        body = await _body(request)
        if body is None:
            return _error(413, "body too large")
        try:
            message = _json(body)
            if not isinstance(message, dict):
                raise providers.InvalidPayload("an SNS message is a JSON object")
        except providers.InvalidPayload as exc:
            return _error(400, str(exc))
        check = verifier(get_settings().SES_CERT_URL_PATTERN)
        try:
            await check.verify(message)
        except sns.InvalidMessage as exc:
            logger.warning("webhooks: SNS message refused: %s", exc)
            return _error(403, str(exc))
        kind = message.get("Type")
        if kind == "SubscriptionConfirmation":
            url = str(message.get("SubscribeURL") or "")
            if not check.allowed(url):
                return _error(403, "SubscribeURL not allowed")
            try:
                await sns.fetch(url)
            except OSError as exc:
                logger.warning("webhooks: SNS subscription not confirmed: %s", exc)
                return _error(502, "could not confirm the subscription")
            logger.info("webhooks: SNS subscription to %s confirmed", message.get("TopicArn"))
            return JSONResponse({"confirmed": True})
        if kind != "Notification":
            return JSONResponse({"ignored": kind})
        try:
            found = providers.ses(str(message.get("MessageId")), str(message.get("Message")))
        except providers.InvalidPayload as exc:
            return _error(400, str(exc))
        return await _record(found)

    async def postmark(request: Request) -> JSONResponse:
        secret = get_settings().POSTMARK_WEBHOOK_SECRET
        if secret is None:
            return _error(503, "POSTMARK_WEBHOOK_SECRET is not set")
        if not _basic_password_ok(request, secret.get_secret_value()):
            return JSONResponse(
                {"error": "authentication required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="webhooks"'},
            )
        body = await _body(request)
        if body is None:
            return _error(413, "body too large")
        try:
            payload = _json(body)
            found = providers.postmark(body.decode(), providers.as_object(payload, "the body"))
        except providers.InvalidPayload as exc:
            return _error(400, str(exc))
        return await _record(found)

    async def generic(request: Request) -> JSONResponse:
        secret = get_settings().WEBHOOK_SECRET
        if secret is None:
            return _error(503, "WEBHOOK_SECRET is not set")
        body = await _body(request)
        if body is None:
            return _error(413, "body too large")
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            return _error(401, f"{SIGNATURE_HEADER} is missing")
        expected = (
            "sha256="
            + hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected.encode(), given.strip().encode()):
            return _error(403, "bad signature")
        try:
            found = providers.generic(body.decode(), _json(body))
        except providers.InvalidPayload as exc:
            return _error(400, str(exc))
        return await _record(found)

    return [
        Route("/webhooks/ses", ses, methods=["POST"]),
        Route("/webhooks/postmark", postmark, methods=["POST"]),
        Route("/webhooks/feedback", generic, methods=["POST"]),
    ]


def _basic_password_ok(request: Request, secret: str) -> bool:
    """HTTP basic auth (any user name) with ``secret`` as the password."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(password.encode(), secret.encode())
