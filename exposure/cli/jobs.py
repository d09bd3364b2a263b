"""``exposure jobs run NAME``: one pass of a scheduled job, now, under the server's lease.

The jobs are the services' own, from their bundles, so a manual run is the same code path
as a scheduled one and opens only the service the job belongs to. ``purge`` runs the purge
of every service whose database is configured. ``--now`` evaluates as of another time:
later than the real clock only with ``--allow-future`` (tests and drills), since an export
"in the future" would release keys before their embargo and a purge would delete data
before its deadline.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any

import typer

from exposure.cli.common import load_settings, open_services, utc_now
from exposure.cli.failures import fail
from exposure.cli.progress import progress
from exposure.jobs import Job, JobResult, run_job
from exposure.settings import Service

#: Every job, by name, and the service it belongs to (a test keeps this in step with the
#: bundles). ``purge`` runs every configured service's purge.
JOBS: dict[str, Service] = {
    "jwks-refresh": Service.KEYSERVER,
    "revision-key-rotation": Service.KEYSERVER,
    "export-batches": Service.KEYSERVER,
    "export-worker": Service.KEYSERVER,
    "import": Service.KEYSERVER,
    "mirror": Service.KEYSERVER,
    "purge-keyserver": Service.KEYSERVER,
    "purge-verification": Service.VERIFICATION,
}
PURGE_ALL = "purge"
#: How often ``jobs run --wait`` tries a lease another process holds.
LEASE_RETRY_SECONDS = 0.5

_JOB_HELP = """\
jwks-refresh: mirror trusted health authorities' public keys (key server, every 2 min)
revision-key-rotation: make and destroy revision-token keys (key server, hourly)
export-batches: close the export windows that are old enough (key server, every 5 min)
export-worker: write the signed files of closed windows and index.txt (key server, every min)
import: import the new signed export files of every import source (key server, every 5 min)
mirror: copy mirrored peers' index.txt and files into the blob store (key server, every 5 min)
purge-keyserver, purge-verification: delete what is past its deadline (hourly)
purge: every configured service's purge"""

jobs_app = typer.Typer(help="Run a scheduled job once, now.", no_args_is_help=True)


def _as_of(text: str | None, *, allow_future: bool) -> datetime:
    """The time a job evaluates at: the real clock, or ``--now`` within the rules."""
    real = utc_now()
    if text is None:
        return real
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--now {text!r} is not an ISO 8601 time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        fail("--now needs a UTC offset, e.g. 2026-11-25T12:00:00+00:00")
    if moment > real and not allow_future:
        # A job run "in the future" would publish keys before their embargo ends.
        fail("--now is later than the real clock; add --allow-future to insist")
    return moment


def _run(job: Job, as_of: datetime, wait_seconds: float) -> JobResult:
    """One pass of ``job``; while a replica holds its lease, try again for ``wait_seconds``.

    An operator who asks for a run wants it to happen: a scheduled pass of the same job
    elsewhere usually ends within seconds, so the command waits for it rather than reporting
    a skip that leaves the work undone.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            result = run_job(job, now=as_of)
        except Exception as error:  # an operator's command: a message, not a traceback
            first_line = str(error).splitlines()[0] if str(error) else ""
            fail(f"job {job.name} failed: {type(error).__name__}: {first_line}")
        if result.ran or time.monotonic() >= deadline:
            return result
        time.sleep(LEASE_RETRY_SECONDS)


def _print(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@jobs_app.command("list")
def list_jobs() -> None:
    """List the jobs and what each does."""
    typer.echo(_JOB_HELP)


@jobs_app.command(
    "run",
    help=(
        "Run one pass of a job; print its JSON summary (exit 1 if it failed)."
        f"\n\nJobs:\n\n{_JOB_HELP}"
    ),
)
def run(
    name: Annotated[str, typer.Argument(help="The job (see below), e.g. export-worker or purge.")],
    now: Annotated[
        str | None,
        typer.Option(help="Evaluate as of this ISO 8601 time (with offset) instead of now."),
    ] = None,
    allow_future: Annotated[
        bool, typer.Option(help="Allow --now later than the real clock (tests, drills).")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            max=3600,
            help="Seconds to wait while another process runs the job (its lease is held); "
            "then it is reported as skipped.",
        ),
    ] = 60,
) -> None:
    if name != PURGE_ALL and name not in JOBS:
        fail(f"unknown job {name!r}; known jobs: {', '.join([*JOBS, PURGE_ALL])}", 2)
    as_of = _as_of(now, allow_future=allow_future)
    settings = load_settings()
    services = settings.base.configured_services() if name == PURGE_ALL else [JOBS[name]]
    with open_services(services, settings=settings) as deployment, progress() as shown:
        jobs = {job.name: job for job in deployment.jobs()}
        if name == PURGE_ALL:
            _run_purges(
                [job for job in jobs.values() if job.name.startswith("purge-")],
                as_of,
                wait,
                shown.step,
            )
            return
        shown.step(f"running {name}")
        result = _run(jobs[name], as_of, wait)
    _print({"job": result.job, "ran": result.ran, "summary": dict(result.summary)})
    if result.summary.get("failed"):
        raise typer.Exit(code=1)


def _run_purges(purges: list[Job], as_of: datetime, wait_seconds: float, step: Any) -> None:
    failures: list[str] = []
    summaries: dict[str, Any] = {}
    ran = False
    for job in purges:
        step(f"running {job.name}")
        try:
            result = _run(job, as_of, wait_seconds)
        except typer.Exit:
            failures.append(job.name)
            continue
        ran = ran or result.ran
        summaries[job.name] = dict(result.summary)
    _print({"job": PURGE_ALL, "ran": ran, "summary": summaries})
    if failures:
        raise typer.Exit(code=1)
