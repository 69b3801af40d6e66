"""Verifying Amazon SNS messages (how SES delivers bounce and complaint notifications).

SNS signs a canonical string of the message's fields (``Name\\nvalue\\n`` for a
fixed list of names, in order) with RSA PKCS#1 v1.5, SHA1 for SignatureVersion
1 and SHA256 for 2, and names its certificate by URL. A forger could name their
own certificate, so the URL must match an allow-list pattern (by default
``https://sns.<region>.amazonaws.com/``) before it is fetched. The certificate
source is a parameter so that tests, and private deployments, can supply their
own. `cryptography` does the X.509 and RSA work: the stdlib has neither.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jobs.errors import JobsError

CertificateSource = Callable[[str], Awaitable[bytes]]

_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
FETCH_TIMEOUT = 10.0


class InvalidMessage(JobsError, ValueError):
    """An SNS message that is malformed, unsigned, or whose signature does not verify."""


def canonical(message: Mapping[str, Any]) -> bytes:
    """The string SNS signs for ``message``."""
    kind = message.get("Type")
    names = _NOTIFICATION if kind == "Notification" else _SUBSCRIPTION
    parts = [f"{name}\n{message[name]}\n" for name in names if message.get(name) is not None]
    return "".join(parts).encode()


async def fetch(url: str) -> bytes:
    """The body at ``url`` (allow-listed by the caller), fetched in a thread."""

    def get() -> bytes:
        with urllib.request.urlopen(
            url, timeout=FETCH_TIMEOUT
        ) as response:  # URL allow-listed by the caller
            return bytes(response.read())

    return await asyncio.to_thread(get)


class Verifier:
    """Checks SNS signatures; certificates are cached by URL."""

    def __init__(self, url_pattern: str, source: CertificateSource = fetch) -> None:
        self.url_pattern = re.compile(url_pattern)
        self.source = source
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    def allowed(self, url: str) -> bool:
        return bool(self.url_pattern.match(url))

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        if url not in self._keys:
            try:
                certificate = x509.load_pem_x509_certificate(await self.source(url))
            except (OSError, ValueError) as exc:
                raise InvalidMessage(f"cannot load the signing certificate {url}: {exc}") from None
            key = certificate.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise InvalidMessage("the signing certificate does not hold an RSA key")
            self._keys[url] = key
        return self._keys[url]

    async def verify(self, message: Mapping[str, Any]) -> None:
        """Raise `InvalidMessage` unless ``message`` carries a valid SNS signature."""
        url = str(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
        if not self.allowed(url):
            raise InvalidMessage(f"signing certificate URL not allowed: {url!r}")
        algorithm = _HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise InvalidMessage("unknown SignatureVersion")
        try:
            signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        except binascii.Error:
            raise InvalidMessage("the signature is not base64") from None
        key = await self._key(url)
        try:
            key.verify(signature, canonical(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise InvalidMessage("the signature does not match the message") from None
