"""Email address validation (email-validator) with `jobs`' error type."""

from __future__ import annotations

import functools

import email_validator

from jobs.errors import InvalidEmailAddress


@functools.lru_cache(maxsize=4096)
def _validate(address: str) -> email_validator.ValidatedEmail:
    if not isinstance(address, str) or not address.strip():
        raise InvalidEmailAddress("email address is empty")
    try:
        return email_validator.validate_email(
            address, check_deliverability=False, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidEmailAddress(f"invalid email address {address!r}: {exc}") from None


def normalize_address(address: str) -> str:
    """Return the normalized form of ``address`` or raise `InvalidEmailAddress`.

    Syntax only: no DNS lookups, so enqueueing never waits on the network.
    """
    return _validate(address).normalized


def wire_address(address: str) -> str:
    """``address`` as it goes on the wire: validated, an IDN domain in ASCII (punycode).

    A non-ASCII local part stays UTF-8 (only an SMTPUTF8 server takes it).
    """
    result = _validate(address)
    return result.ascii_email or result.normalized


def ascii_domain(address: str) -> str:
    """The domain of ``address`` in ASCII (punycode for an IDN)."""
    return str(_validate(address).ascii_domain)
