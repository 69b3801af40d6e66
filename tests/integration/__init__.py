"""Integration tier: real PostgreSQL, a real SMTP peer, real Redis, workers in-process."""
