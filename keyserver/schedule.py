"""Which periodic jobs the key server runs, and how often (see exposure.jobs for the runner).

- ``jwks-refresh`` (every ``jwks_refresh_interval``, reference 2 min): mirror the key sets of
  health authorities that publish one.
- ``revision-key-rotation`` (hourly; the reference checks every 4 h): make a new revision
  key every ``revision_key_period`` and destroy old ones after ``revision_key_destroy_after``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from exposure.db import unit_of_work
from exposure.jobs import Job
from keyserver.context import KeyserverContext
from keyserver.jobs import http_fetcher, refresh_jwks
from keyserver.service.revision_keys import rotate_revision_keys

ROTATION_CHECK_INTERVAL = timedelta(hours=1)


def jwks_refresh_job(context: KeyserverContext, fetch: Callable[[str], bytes] | None = None) -> Job:
    fetcher = fetch or http_fetcher(context.settings.jwks_request_timeout)

    def run(now: datetime) -> Mapping[str, Any]:
        return refresh_jwks(context.session_factory, fetch=fetcher, now=now).as_dict()

    return Job(
        name="jwks-refresh",
        interval=context.settings.jwks_refresh_interval,
        run=run,
        session_factory=context.session_factory,
    )


def revision_key_rotation_job(context: KeyserverContext) -> Job:
    settings = context.settings

    def run(now: datetime) -> Mapping[str, Any]:
        with unit_of_work(context.session_factory) as session:
            report = rotate_revision_keys(
                session,
                context.revision_wrapping,
                now,
                new_key_period=settings.revision_key_period,
                destroy_after=settings.revision_key_destroy_after,
            )
        context.revision_keys.invalidate()
        return asdict(report)

    return Job(
        name="revision-key-rotation",
        interval=ROTATION_CHECK_INTERVAL,
        run=run,
        session_factory=context.session_factory,
    )


def scheduled_jobs(context: KeyserverContext) -> list[Job]:
    """Every periodic job of the key server."""
    return [jwks_refresh_job(context), revision_key_rotation_job(context)]
