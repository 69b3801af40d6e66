"""The worker's HTTP endpoint: ``/metrics`` (Prometheus) and ``/healthz``, from a thread."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from jobs.errors import ConfigError

logger = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s %s", self.address_string(), format % args)


class Endpoint:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` until `stop`."""

    def __init__(
        self, host: str, port: int, *, probe: Probe, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.host = host
        self.port = port
        self._probe = probe
        self._metrics = make_wsgi_app(registry)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]  # prometheus' WSGI app is untyped
        if path == "/healthz":
            healthy, reason = self._probe()
            if not healthy:
                logger.warning("health check failed: %s", reason)
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [(reason + "\n").encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]

    def start(self) -> None:
        server_class = _Server6 if ":" in self.host else _Server
        try:
            self._server = server_class((self.host, self.port), _QuietHandler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve /metrics and /healthz on {self.host}:{self.port} "
                f"(WORKER_HTTP_HOST, WORKER_HTTP_PORT): {exc.strerror or exc}; "
                "give each worker on a machine its own port, or 0 to disable"
            ) from None
        self._server.set_app(self._app)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="jobs-http", daemon=True
        )
        self._thread.start()
        logger.info("serving /metrics and /healthz on http://%s:%s", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
