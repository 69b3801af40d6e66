"""Thin procrastinate task bodies: settings in, one transaction, modules do the work."""

from __future__ import annotations
