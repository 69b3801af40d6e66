"""`jobs` with the test-only tasks registered: ``python -m tests.worker_main worker ...``."""

from __future__ import annotations

import sys

import tests.ops_tasks  # noqa: F401  (registers test.* tasks on jobs.app.app)
from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
