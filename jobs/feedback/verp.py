"""VERP return paths: ``bounces+<ledger id>-<signature>@MAIL_BOUNCE_DOMAIN``.

A bounce goes to the envelope sender, so a signed reference to the ledger row
in it tells which message bounced, whatever the receiver puts in its report.
The signature (HMAC-SHA256, truncated to 80 bits, base32 in lower case because
some MTAs fold the local part's case) stops anyone from forging bounces for
rows they did not receive mail from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

PREFIX = "bounces"
_PURPOSE = b"jobs.verp.v1"
_LOCAL = re.compile(rf"^{PREFIX}\+(\d+)-([a-z2-7]+)$")


def verp_key(signing_key: bytes) -> bytes:
    """A key for return paths, derived from the installation's signing key."""
    return hmac.digest(signing_key, _PURPOSE, "sha256")


def _signature(key: bytes, ledger_id: int) -> str:
    digest = hmac.digest(key, str(ledger_id).encode(), hashlib.sha256)[:10]
    return base64.b32encode(digest).decode().lower()


def return_path(key: bytes, ledger_id: int, domain: str) -> str:
    return f"{PREFIX}+{ledger_id}-{_signature(key, ledger_id)}@{domain}"


def ledger_ref(key: bytes, address: str, domain: str) -> int | None:
    """The ledger id a return path names, if ``address`` is one with a valid signature."""
    local, at, host = address.strip().strip("<>").rpartition("@")
    if not at or host.lower() != domain.lower():
        return None
    match = _LOCAL.match(local.lower())
    if match is None:
        return None
    ledger_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _signature(key, ledger_id)):
        return None
    return ledger_id
