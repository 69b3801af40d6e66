"""Unit tier: no service, no subprocess; pure functions and in-memory objects."""
