"""``exposure bench ...``: measure the hot paths on this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from exposure.bench.rpi import BenchmarkMismatchError, run_rpi_benchmark
from exposure.bench.verification import (
    DEFAULT_CONCURRENCY,
    DEFAULT_FLOWS,
    DEFAULT_POSTGRES_URL,
    DEFAULT_TIME_LIMIT,
    BenchmarkError,
    CertificateMismatchError,
    Database,
    LatencySummary,
    VerificationBenchmarkResult,
    run_verification_benchmark,
)

bench_app = typer.Typer(
    help="Measure the hot paths (RPI derivation, verification flow) on this machine.",
    no_args_is_help=True,
)


@bench_app.command("rpi")
def rpi(
    keys: Annotated[
        int, typer.Option("--keys", min=1, help="How many random TEKs to derive.")
    ] = 200_000,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes (default: one per core)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of text.")
    ] = False,
) -> None:
    """Derive all 144 Rolling Proximity Identifiers of random keys; report keys per second.

    A random sample of the results is checked against the reference derivation first.
    """
    try:
        result = run_rpi_benchmark(keys, workers=workers)
    except BenchmarkMismatchError as error:
        typer.echo(f"benchmark void: {error}", err=True)
        raise typer.Exit(code=1) from None

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    machine = result.machine
    memory = f"{machine.memory_gib} GiB" if machine.memory_gib is not None else "unknown"
    typer.echo(
        "\n".join(
            [
                f"RPI derivation: {result.keys:,} keys x {result.rpis_per_key} RPIs",
                f"  keys/second   {result.keys_per_second:,.0f}",
                f"  RPIs/second   {result.rpis_per_second:,.0f}",
                f"  total seconds {result.seconds:.3f}",
                f"  workers       {result.workers}",
                f"  verified      {result.verified_keys} sampled keys match the reference",
                f"  cpu           {machine.cpu_model} ({machine.cores} cores)",
                f"  memory        {memory}",
                f"  python        {machine.python_version} on {machine.platform}",
            ]
        )
    )


@bench_app.command("verification")
def verification(
    flows: Annotated[
        int, typer.Option("--flows", min=1, help="Complete flows (issue, verify, certificate).")
    ] = DEFAULT_FLOWS,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Clients doing flows at the same time.")
    ] = DEFAULT_CONCURRENCY,
    database: Annotated[
        Database, typer.Option("--database", help="The server's database.")
    ] = Database.SQLITE,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help=f"PostgreSQL database for a temporary schema (default {DEFAULT_POSTGRES_URL}).",
        ),
    ] = None,
    server_workers: Annotated[
        int,
        typer.Option(
            "--server-workers",
            min=1,
            help="Server processes; above 1 only if `exposure serve` has --workers.",
        ),
    ] = 1,
    time_limit: Annotated[
        float,
        typer.Option("--time-limit", min=1, help="Seconds after which each phase stops."),
    ] = DEFAULT_TIME_LIMIT,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
) -> None:
    """Run complete verification flows against a server of its own; report flows/s.

    Starts `exposure serve` on a free loopback port with a fresh data directory
    (and a temporary PostgreSQL schema with --database postgresql), measures
    issue -> verify -> certificate flows and then GET /health at the same
    concurrency. Sampled certificates are verified against the published keys.
    """
    try:
        result = run_verification_benchmark(
            flows,
            concurrency=concurrency,
            database=database,
            database_url=database_url,
            server_workers=server_workers,
            time_limit=time_limit,
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except CertificateMismatchError as error:
        typer.echo(f"benchmark void: {error}", err=True)
        raise typer.Exit(code=1) from None
    except BenchmarkError as error:
        typer.echo(f"benchmark failed: {error}", err=True)
        raise typer.Exit(code=1) from None

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print_verification(result)


def _latency_row(name: str, summary: LatencySummary) -> list[str]:
    return [
        name,
        f"{summary.count:,}",
        f"{summary.p50_ms:,.1f}",
        f"{summary.p95_ms:,.1f}",
        f"{summary.p99_ms:,.1f}",
        f"{summary.max_ms:,.1f}",
    ]


def _cpu(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:,.1f} s"


def _print_verification(result: VerificationBenchmarkResult) -> None:
    console = Console()
    machine = result.machine
    health = result.health
    summary = Table(title="Verification flow benchmark", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    rows = [
        ("database", result.database),
        ("concurrency / server processes", f"{result.concurrency} / {result.server_workers}"),
        ("flows completed", f"{result.flows_completed:,} of {result.flows_requested:,}"),
        ("flows failed", f"{result.flows_failed:,}"),
        ("flows/second", f"{result.flows_per_second:,.1f}"),
        ("requests/second", f"{result.requests_per_second:,.1f}"),
        ("seconds", f"{result.seconds:,.2f}" + (" (time limit hit)" if result.timed_out else "")),
        ("/health requests/second", f"{health.requests_per_second:,.1f} ({health.ok:,} ok)"),
        ("certificates verified", f"{result.verified_certificates}"),
        (
            "CPU: server / clients",
            f"{_cpu(result.server_cpu_seconds)} / {_cpu(result.client_cpu_seconds)}",
        ),
        ("CPU: postgres", _cpu(result.database_cpu_seconds)),
        (
            "machine busy",
            "n/a"
            if result.machine_cpu_utilization is None
            else f"{result.machine_cpu_utilization:.0%}",
        ),
        ("cpu", f"{machine.cpu_model} ({machine.cores} cores)"),
        ("python", f"{machine.python_version} on {machine.platform}"),
    ]
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)

    latency = Table(title="Latency (ms)")
    for column in ("step", "count", "p50", "p95", "p99", "max"):
        latency.add_column(column, justify="left" if column == "step" else "right")
    for name, step in result.latency.items():
        latency.add_row(*_latency_row(name, step))
    latency.add_row(*_latency_row("/health", health.latency))
    console.print(latency)

    errors = {**result.errors, **{f"warm-up {k}": v for k, v in result.warmup_errors.items()}}
    if errors or health.failed:
        failures = Table(title="Failed requests")
        failures.add_column("step/errorCode")
        failures.add_column("count", justify="right")
        for name, count in errors.items():
            failures.add_row(name, f"{count:,}")
        if health.failed:
            failures.add_row("/health", f"{health.failed:,}")
        console.print(failures)
    if result.server_log_tail:
        console.print("[bold]server log (tail)[/bold]")
        console.print(result.server_log_tail, markup=False, highlight=False)
