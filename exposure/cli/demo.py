"""``exposure demo``: simulate a country's phones against a real server and check the result.

It starts ``exposure serve`` on a free port in a fresh temporary data directory (SQLite, or
``--database-url``), bootstraps it through the admin CLI, lets ``--phones`` phones meet over
``--days`` days, has a lab issue codes to the positive ones, uploads their keys through the
phone SDK, exports, lets every phone download, verify and match, and prints a summary (or
``--json``). Exit 0 when the phones found exactly the exposure windows and notifications the
simulation's ground truth says, and no phone that never met a positive was notified; 1
otherwise; 2 for bad options. See :mod:`exposure.demo.run` for every step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from exposure.cli.failures import EXIT_FAILED, EXIT_USAGE, fail
from exposure.cli.progress import progress
from exposure.demo.run import DemoFailed, DemoOptions, DemoReport, run_demo
from exposure.demo.simulation import MAX_DAYS

demo_app = typer.Typer(help="Simulate phones against a real server; check found = expected.")


def _summary(report: DemoReport) -> str:
    windows = f"{report.exposure_windows_found} found / {report.exposure_windows_expected} expected"
    notified = f"{report.notified_phones_found} found / {report.notified_phones_expected} expected"
    steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in report.steps.items())
    verdict = "OK: found = expected" if report.ok else "FAILED: found != expected"
    return "\n".join(
        [
            f"phones             {report.phones} ({report.positives} tested positive)",
            f"keys published     {report.keys_published} (+{report.chaff_requests} chaff calls)",
            f"files exported     {report.files_exported} (refused by phones: "
            f"{report.refused_files})",
            f"exposure windows   {windows}",
            f"notified phones    {notified} (false notifications: {report.false_notifications})",
            f"steps              {steps}",
            f"total              {sum(report.steps.values()):.1f}s",
            verdict,
        ]
    )


@demo_app.command()
def demo(
    phones: Annotated[int, typer.Option(min=2, help="Simulated phones.")] = 1_000,
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS, help="Days they meet over.")] = 14,
    seed: Annotated[int, typer.Option(help="Seed of the simulation (same seed, same world).")] = 1,
    positive_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of phones that test positive.")
    ] = 0.02,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the server's state here (default: a temporary directory)."),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Run on this (empty) PostgreSQL database instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Simulate phones meeting, testing positive, uploading, downloading and matching."""
    if data_dir is not None and data_dir.exists() and any(data_dir.iterdir()):
        fail(f"--data-dir {data_dir} is not empty; the demo needs a fresh one", EXIT_USAGE)
    options = DemoOptions(
        phones=phones,
        days=days,
        seed=seed,
        positive_share=positive_share,
        data_dir=data_dir,
        database_url=database_url,
    )
    try:
        with progress() as shown:
            report = run_demo(options, shown)
    except DemoFailed as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        typer.echo(_summary(report))
    if not report.ok:
        raise typer.Exit(code=EXIT_FAILED)
