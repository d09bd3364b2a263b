"""``exposure jobs run NAME``: one pass of a scheduled job, now, under the server's lease.

The jobs are the server's own (the key server's JWKS refresh, revision-key rotation and
export jobs, and each service's retention purge), built from the same settings, so a manual
run is the same code path as a scheduled one. ``purge`` runs both services' purges.
``--now`` evaluates as of another time: later than the real clock only with
``--allow-future`` (tests and drills), since an export "in the future" would release keys
before their embargo and a purge would delete data before its deadline.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from exposure.cli.services import services_runtime
from exposure.clock import utc_now
from exposure.jobs import Job, JobResult, run_job
from keyserver.schedule import scheduled_jobs

jobs_app = typer.Typer(help="Run a scheduled job once, now.", no_args_is_help=True)

#: Runs every service's retention purge.
PURGE_ALL = "purge"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _as_of(text: str | None, *, allow_future: bool) -> datetime:
    """The time a job evaluates at: the real clock, or ``--now`` within the rules."""
    real = utc_now()
    if text is None:
        return real
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--now {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _fail("--now needs a UTC offset, e.g. 2026-11-25T12:00:00+00:00")
    if moment > real and not allow_future:
        # A job run "in the future" would publish keys before their embargo ends.
        raise _fail("--now is later than the real clock; add --allow-future to insist")
    return moment


def _run(job: Job, as_of: datetime) -> JobResult:
    try:
        return run_job(job, now=as_of)
    except Exception as error:  # an operator's command: a message, not a traceback
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise _fail(f"job {job.name} failed: {type(error).__name__}: {first_line}") from None


def _print(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@jobs_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="The job, e.g. jwks-refresh or purge.")],
    now: Annotated[
        str | None,
        typer.Option(help="Evaluate as of this ISO 8601 time (with offset) instead of now."),
    ] = None,
    allow_future: Annotated[
        bool, typer.Option(help="Allow --now later than the real clock (tests, backfills).")
    ] = False,
) -> None:
    """Run one pass of a job; print its JSON summary (exit 1 if it failed)."""
    as_of = _as_of(now, allow_future=allow_future)
    with services_runtime() as runtime:
        jobs = {job.name: job for job in scheduled_jobs(runtime.keyserver)}
        purges = [retention.job() for retention in runtime.retentions.values()]
        jobs.update((job.name, job) for job in purges)
        if name == PURGE_ALL:
            failures: list[str] = []
            summaries: dict[str, Any] = {}
            ran = False
            for job in purges:
                try:
                    result = _run(job, as_of)
                except typer.Exit:
                    failures.append(job.name)
                    continue
                ran = ran or result.ran
                summaries[job.name] = dict(result.summary)
            _print({"job": PURGE_ALL, "ran": ran, "summary": summaries})
            if failures:
                raise typer.Exit(code=1)
            return
        chosen = jobs.get(name)
        if chosen is None:
            known = ", ".join(sorted([*jobs, PURGE_ALL]))
            raise _fail(f"unknown job {name!r}; known jobs: {known}")
        result = _run(chosen, as_of)
    _print({"job": result.job, "ran": result.ran, "summary": dict(result.summary)})
    if result.summary.get("failed"):
        raise typer.Exit(code=1)
