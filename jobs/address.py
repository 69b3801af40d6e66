"""Email address validation (email-validator) with `jobs`' error type."""

from __future__ import annotations

import functools

import email_validator

from jobs.errors import InvalidEmailAddress


@functools.lru_cache(maxsize=4096)
def normalize_address(address: str) -> str:
    """Return the normalized form of ``address`` or raise `InvalidEmailAddress`.

    Syntax only: no DNS lookups, so enqueueing never waits on the network.
    """
    if not isinstance(address, str) or not address.strip():
        raise InvalidEmailAddress("email address is empty")
    try:
        result = email_validator.validate_email(
            address, check_deliverability=False, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidEmailAddress(f"invalid email address {address!r}: {exc}") from None
    return result.normalized
