"""The public API: what `from jobs import ...` offers, and what it does not load."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import jobs

WORKER_ONLY = ("aiosmtpd", "prometheus_client", "redis", "pgserver")


def _loaded_after(statement: str) -> dict[str, object]:
    """Run ``statement`` in a fresh interpreter; what it loaded, and its metrics."""
    probe = f"""
import json, sys
{statement}
registry = None
if "prometheus_client" in sys.modules:
    from prometheus_client import REGISTRY
    registry = sorted(REGISTRY._names_to_collectors)
print(json.dumps({{"modules": sorted(sys.modules), "metrics": registry}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded: dict[str, object] = json.loads(out)
    return loaded


def test_the_producer_loads_no_worker_code_and_registers_no_metrics() -> None:
    loaded = _loaded_after(
        "from jobs import enqueue_email, enqueue_email_async, register_user, register_user_async"
    )
    modules = loaded["modules"]
    assert isinstance(modules, list)
    heavy = [m for m in modules if m.split(".")[0] in WORKER_ONLY]
    assert heavy == []
    worker_code = ("jobs.worker", "jobs.ops", "jobs.app", "jobs.mail.smtp", "jobs.mail.pool")
    assert not [m for m in modules if m.startswith(worker_code)]
    assert loaded["metrics"] is None


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in jobs.__all__:
        assert getattr(jobs, name) is not None, name
    assert issubclass(jobs.JobsError, Exception)
    assert {"enqueue_email", "register_user", "get_result", "unsubscribe"} <= set(dir(jobs))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = jobs.nope  # the point: it does not exist
