"""Building messages (templates -> EmailMessage) and sending them over SMTP."""

from __future__ import annotations
