"""Background email and scheduled bulk jobs on PostgreSQL."""

from __future__ import annotations

__version__ = "0.1.0"
