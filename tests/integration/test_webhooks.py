"""The bounce and complaint webhooks, in a small Starlette app over httpx, against
a real database; SNS certificates come from a local HTTP server."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from jobs.db import session_factory
from jobs.feedback.sns import canonical
from jobs.mail.enqueue import enqueue_email
from jobs.web import create_app
from tests.conftest import count

WEBHOOK_SECRET = "generic-webhook-secret"
POSTMARK_SECRET = "postmark-webhook-secret"


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = self.files.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def pki() -> Iterator[tuple[rsa.RSAPrivateKey, str, list[str]]]:
    """A self-signed certificate served at http://127.0.0.1:<port>/cert.pem:
    (its key, the server's base URL, the paths it was asked for)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    handler: type[_Files] = type("Files", (_Files,), {"files": {}, "hits": []})
    handler.files["/cert.pem"] = cert.public_bytes(serialization.Encoding.PEM)
    handler.files["/confirm"] = b"<ConfirmSubscriptionResponse/>"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield key, f"http://127.0.0.1:{server.server_address[1]}", handler.hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def client(database_url: str, env: Any, pki: Any) -> AsyncIterator[httpx.AsyncClient]:
    _, base, _ = pki
    env(
        SES_CERT_URL_PATTERN=f"^{base.replace('.', '[.]')}/",
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        POSTMARK_WEBHOOK_SECRET=POSTMARK_SECRET,
        SOFT_BOUNCE_LIMIT="2",
        SECRET_KEY="webhook-tests-secret-key-0123456789",
    )
    # The application `jobs web` serves: the webhooks are public routes of it.
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def _signed(key: rsa.RSAPrivateKey, message: dict[str, Any], version: str) -> dict[str, Any]:
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical(message), padding.PKCS1v15(), algorithm)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


def _suppressions(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT address, reason FROM suppressions").fetchall())


def _sent_row(url: str, to: str) -> str:
    """A ledger row to ``to``, marked sent; its Message-ID."""
    with session_factory(url)() as session, session.begin():
        row = enqueue_email(session, to=to, template="welcome", context={"username": "x"})
        row.status, row.message_id = "sent", f"<{to}.id@example.com>"  # type: ignore[assignment]  # the enum's value
        return str(row.message_id)


async def test_sns_notifications_are_verified_and_recorded(
    client: httpx.AsyncClient, pki: Any, database_url: str
) -> None:
    key, base, hits = pki
    common = {"TopicArn": "arn:aws:sns:eu-west-1:1:ses", "SigningCertURL": f"{base}/cert.pem"}
    confirmation = _signed(
        key,
        {
            **common,
            "Type": "SubscriptionConfirmation",
            "MessageId": "m-0",
            "Token": "t",
            "Message": "confirm",
            "SubscribeURL": f"{base}/confirm?token=t",
            "Timestamp": "2026-12-01T00:00:00Z",
        },
        "1",
    )
    response = await client.post("/webhooks/ses", json=confirmation)
    assert response.json() == {"confirmed": True}
    assert "/confirm?token=t" in hits

    message_id = _sent_row(database_url, "gone@example.com")
    ses = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [{"emailAddress": "gone@example.com", "status": "5.1.1"}],
        },
        "mail": {"commonHeaders": {"messageId": message_id}},
    }
    notification = _signed(
        key,
        {
            **common,
            "Type": "Notification",
            "MessageId": "m-1",
            "Message": json.dumps(ses),
            "Timestamp": "2026-12-01T00:00:01Z",
        },
        "2",
    )
    tampered = {**notification, "Message": notification["Message"].replace("gone", "other")}
    assert (await client.post("/webhooks/ses", json=tampered)).status_code == 403
    elsewhere = _signed(key, {**notification, "SigningCertURL": "https://evil.test/c.pem"}, "2")
    assert (await client.post("/webhooks/ses", json=elsewhere)).status_code == 403
    assert _suppressions(database_url) == {}

    assert (await client.post("/webhooks/ses", json=notification)).json() == {
        "recorded": 1,
        "duplicates": 0,
    }
    again = await client.post("/webhooks/ses", json=notification)  # SNS retries
    assert again.json() == {"recorded": 0, "duplicates": 1}
    assert _suppressions(database_url) == {"gone@example.com": "hard_bounce"}
    assert (
        count(database_url, "SELECT count(*) FROM email_messages WHERE feedback = 'hard_bounce'")
        == 1
    )


async def test_postmark_needs_its_secret(client: httpx.AsyncClient, database_url: str) -> None:
    complaint = {
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "ID": 42,
        "Email": "a@example.com",
    }
    assert (await client.post("/webhooks/postmark", json=complaint)).status_code == 401
    wrong = await client.post("/webhooks/postmark", json=complaint, auth=("postmark", "nope"))
    assert wrong.status_code == 401
    right = await client.post(
        "/webhooks/postmark", json=complaint, auth=("postmark", POSTMARK_SECRET)
    )
    assert right.json() == {"recorded": 1, "duplicates": 0}
    assert _suppressions(database_url) == {"a@example.com": "complaint"}


async def test_generic_events_are_signed_and_soft_bounces_add_up(
    client: httpx.AsyncClient, database_url: str
) -> None:
    def post(events: list[dict[str, str]], signature: str | None = None) -> Any:
        body = json.dumps(events).encode()
        digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Jobs-Signature": signature or f"sha256={digest}"}
        return client.post("/webhooks/feedback", content=body, headers=headers)

    soft = [{"id": "e1", "type": "soft_bounce", "address": "full@example.com"}]
    assert (await client.post("/webhooks/feedback", json=soft)).status_code == 401
    assert (await post(soft, signature="sha256=" + "0" * 64)).status_code == 403
    assert (await post(soft)).json() == {"recorded": 1, "duplicates": 0}
    assert _suppressions(database_url) == {}  # one soft bounce is not enough
    assert (await post([{**soft[0], "id": "e2"}])).json() == {"recorded": 1, "duplicates": 0}
    assert _suppressions(database_url) == {"full@example.com": "hard_bounce"}  # SOFT_BOUNCE_LIMIT=2
    bad = await post([{"id": "e3", "type": "opened", "address": "x@example.com"}])
    assert bad.status_code == 400
    huge = [{**soft[0], "id": "e4", "detail": "x" * 2**21}]
    assert (await post(huge)).status_code == 413
