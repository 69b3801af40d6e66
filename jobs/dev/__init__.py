"""For a developer's machine only: `jobs demo` and the local SMTP sink that
writes every message it receives to a folder. Never needed in production.
"""
