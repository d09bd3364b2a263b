"""Logging set-up for the server process.

Privacy rule: no client address, user agent or request line is ever logged. Uvicorn's access
log (which records the client's IP and port) is switched off where the server starts, and the
format below carries nothing from the request.
"""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Send log records to stderr at ``level`` in the project's format."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    if level != "debug":
        # Each migration step says which dialect it uses; only debugging wants that.
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
