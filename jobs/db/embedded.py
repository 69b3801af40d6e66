"""The embedded PostgreSQL (pgserver) used when DATABASE_URL is unset."""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


@functools.cache
def embedded_url(pgdata: Path) -> str:
    """Start (or reuse) the embedded server whose data lives in ``pgdata``.

    The server is shared by every process using the same directory and stops
    when the last of them exits (``cleanup_mode='stop'``); the data stays.
    """
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
        warnings.simplefilter("ignore")
        from pgserver import get_server  # type: ignore[attr-defined]  # not in its __all__

        server = get_server(pgdata, cleanup_mode="stop")
    _servers.append(server)  # keep the handle alive for the life of the process
    logger.info("DATABASE_URL is unset: using the embedded PostgreSQL in %s", pgdata)
    return str(server.get_uri())


_servers: list[object] = []
