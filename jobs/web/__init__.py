"""The web side of `jobs`: a Starlette application, rendered on the server with jinja2
(autoescaped), no JavaScript. It serves the public one-click unsubscribe endpoint
(RFC 8058), the operator dashboard (queues, workers, jobs, emails, campaigns, with
retry and cancel) behind HTTP Basic credentials or the host application's own auth,
with CSRF tokens, same-origin checks and a strict Content-Security-Policy, and the
webhooks through which email providers report bounces and complaints
(`jobs.web.webhooks`). Run it with `jobs web`, or mount `create_app()` into an
application: ``app.mount("/jobs", jobs.web.create_app())``.
"""

from __future__ import annotations

from jobs.web.app import create_app
from jobs.web.security import AuthCheck

__all__ = ["AuthCheck", "create_app"]
