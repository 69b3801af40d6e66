"""The worker's HTTP endpoint: routes, and a clear error when its port is taken."""

from __future__ import annotations

import socket

import pytest

from jobs.errors import ConfigError
from jobs.worker.endpoint import Endpoint
from tests.workers import get


def test_routes_and_a_failing_probe() -> None:
    endpoint = Endpoint("127.0.0.1", 0, probe=lambda: (False, "database: gone"))
    endpoint.start()
    try:
        base = f"http://127.0.0.1:{endpoint.port}"
        assert get(base + "/healthz") == (503, "database: gone\n")
        status, body = get(base + "/metrics")
        assert status == 200
        assert "# TYPE jobs_finished_total counter" in body
        assert get(base + "/")[0] == 404
    finally:
        endpoint.stop()


def test_a_port_in_use_is_a_config_error_naming_the_variables() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = Endpoint("127.0.0.1", port, probe=lambda: (True, "ok"))
        with pytest.raises(ConfigError, match=r"WORKER_HTTP_HOST, WORKER_HTTP_PORT") as error:
            endpoint.start()
    assert f"127.0.0.1:{port}" in str(error.value)
