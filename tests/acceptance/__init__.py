"""Acceptance tier: spawned `jobs` processes, as an operator runs them."""
