"""``exposure bench ...``: measure the hot paths on this machine.

``exposure`` mounts :data:`bench_app` lazily, by name (:mod:`exposure.cli.lazy`): this
module and the benchmarks load only when ``exposure bench`` runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from benchmarks import export as export_bench
from benchmarks import importer as import_bench
from benchmarks import match as match_bench
from benchmarks import publish as publish_bench
from benchmarks import purge as purge_bench
from benchmarks import verification as verification_bench
from benchmarks.harness import (
    DEFAULT_POSTGRES_URL,
    BenchmarkError,
    CpuUsage,
    Database,
    HealthResult,
    LatencySummary,
)
from benchmarks.loadgen import MAX_CLIENT_ADDRESSES
from benchmarks.rpi import BenchmarkMismatchError, MachineInfo, run_rpi_benchmark
from exposure.cli.progress import progress

bench_app = typer.Typer(
    help=(
        "Measure the hot paths (RPI, matching, verification flow, publish, export, purge) "
        "on this machine."
    ),
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
        with progress() as shown:
            shown.step("deriving identifiers")
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


@bench_app.command("match")
def match(
    keys: Annotated[
        int, typer.Option("--keys", min=1, help="Published keys a phone downloads and checks.")
    ] = match_bench.DEFAULT_KEYS,
    sightings: Annotated[
        int, typer.Option("--sightings", min=1, help="Sightings the phone recorded.")
    ] = match_bench.DEFAULT_SIGHTINGS,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes (default: one per core)."),
    ] = None,
    keys_per_file: Annotated[
        int, typer.Option("--keys-per-file", min=1, help="Keys per signed export file.")
    ] = match_bench.DEFAULT_KEYS_PER_FILE,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of text.")
    ] = False,
) -> None:
    """Check N downloaded keys against M sightings as the phone SDK does; report keys/s.

    Writes signed export files and a phone's sightings (a few published keys among them
    really heard), then, in a fresh process, reads, verifies, decodes and matches every
    file with the SDK, on every core. The run is void unless exactly the heard keys are
    found. Reports keys per second and peak memory.
    """
    try:
        with progress() as shown:
            shown.step("writing files, then matching")
            result = match_bench.run_match_benchmark(
                keys, sightings, workers=workers, keys_per_file=keys_per_file
            )
    except ValueError as error:
        raise _refuse(error, usage=True) from None
    except match_bench.MatchMismatchError as error:
        raise _refuse(error, void=True) from None

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    machine = result.machine
    typer.echo(
        "\n".join(
            [
                f"Matching: {result.keys:,} keys in {result.files} files "
                f"x {result.sightings:,} sightings",
                f"  keys/second   {result.keys_per_second:,.0f}",
                f"  total seconds {result.seconds:.3f} "
                f"(read, verify, parse: {result.open_seconds:.3f})",
                f"  workers       {result.workers}",
                f"  CPU seconds   {result.cpu_seconds:.3f} "
                f"({result.keys / result.cpu_seconds:,.0f} keys per CPU-second)",
                f"  found         {result.matched_keys} of {result.planted_keys} heard keys",
                f"  peak memory   {result.peak_rss_mib:.0f} MiB, "
                f"{result.baseline_rss_mib:.0f} MiB before the sync "
                f"(largest worker {result.worker_peak_rss_mib:.0f} MiB)",
                f"  cpu           {machine.cpu_model} ({machine.cores} cores)",
                f"  python        {machine.python_version} on {machine.platform}",
            ]
        )
    )


# Options the HTTP benchmarks share.
DatabaseOption = Annotated[Database, typer.Option("--database", help="The server's database.")]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help=f"PostgreSQL database for a temporary schema (default {DEFAULT_POSTGRES_URL}).",
    ),
]
ServerWorkersOption = Annotated[
    int,
    typer.Option(
        "--server-workers",
        min=1,
        help="Server processes; above 1 only if `exposure serve` has --workers.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object instead of tables.")
]


def _refuse(error: Exception, *, void: bool = False, usage: bool = False) -> typer.Exit:
    if usage:
        typer.echo(f"error: {error}", err=True)
        return typer.Exit(code=2)
    typer.echo(f"benchmark {'void' if void else 'failed'}: {error}", err=True)
    return typer.Exit(code=1)


@contextmanager
def _benchmark_errors(void: type[BenchmarkError] | None = None) -> Iterator[None]:
    """Turn a benchmark's refusals into exit codes: 2 for bad usage, 1 for a void or failed run.

    ``void`` names the error a benchmark raises when the server answered wrongly.
    """
    try:
        yield
    except ValueError as error:
        raise _refuse(error, usage=True) from None
    except BenchmarkError as error:
        raise _refuse(error, void=void is not None and isinstance(error, void)) from None


def _exit_if_failed(failed: int, warmup_errors: dict[str, int], what: str) -> None:
    # The numbers are printed either way; the exit status tells a script they are not clean.
    if failed or warmup_errors:
        warmup = sum(warmup_errors.values())
        typer.echo(f"benchmark failed: {failed:,} {what} failed ({warmup:,} in warm-up)", err=True)
        raise typer.Exit(code=1)


@bench_app.command("verification")
def verification(
    flows: Annotated[
        int, typer.Option("--flows", min=1, help="Complete flows (issue, verify, certificate).")
    ] = verification_bench.DEFAULT_FLOWS,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Connections doing flows at once.")
    ] = verification_bench.DEFAULT_CONCURRENCY,
    database: DatabaseOption = Database.SQLITE,
    database_url: DatabaseUrlOption = None,
    server_workers: ServerWorkersOption = 1,
    time_limit: Annotated[
        float,
        typer.Option("--time-limit", min=1, help="Seconds after which each phase stops."),
    ] = verification_bench.DEFAULT_TIME_LIMIT,
    client_addresses: Annotated[
        int | None,
        typer.Option(
            "--client-addresses",
            min=1,
            max=MAX_CLIENT_ADDRESSES,
            help="Loopback addresses the connections come from (default: one each, as "
            "phones do); 1 sends everything from one client, as through one NAT.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run verification flows against a server of its own; report each step's cost.

    Starts `exposure serve verification` on a free loopback port with a fresh
    data directory (and a temporary PostgreSQL schema with --database
    postgresql), makes a realm with `exposure admin realm create`, then runs
    the flows step by step (every issue, then every verify, then every
    certificate) and GET /health at the same concurrency: each step's server
    CPU per request against /health's. Sampled certificates are verified
    against the published keys.
    """
    with _benchmark_errors(void=verification_bench.CertificateMismatchError), progress() as shown:
        shown.step("running the benchmark")
        result = verification_bench.run_verification_benchmark(
            flows,
            concurrency=concurrency,
            database=database,
            database_url=database_url,
            server_workers=server_workers,
            time_limit=time_limit,
            client_addresses=client_addresses,
        )

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_verification(result)
    _exit_if_failed(result.flows_failed, result.warmup_errors, "flows")


@bench_app.command("publish")
def publish(
    publishes: Annotated[
        int, typer.Option("--publishes", min=1, help="Publishes of 14 keys each.")
    ] = publish_bench.DEFAULT_PUBLISHES,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Connections publishing at once.")
    ] = publish_bench.DEFAULT_CONCURRENCY,
    database: DatabaseOption = Database.SQLITE,
    database_url: DatabaseUrlOption = None,
    server_workers: ServerWorkersOption = 1,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit",
            min=1,
            max=publish_bench.MAX_TIME_LIMIT,
            help="Seconds after which each phase stops (certificates live 15 minutes).",
        ),
    ] = publish_bench.DEFAULT_TIME_LIMIT,
    as_json: JsonOption = False,
) -> None:
    """Send complete, valid v1 publishes to a server of its own; report publishes/s.

    Starts `exposure serve keyserver` as `bench verification` starts its
    service, registers its own health authority and app with `exposure admin`,
    signs every certificate before the timed phase, then measures POST
    /v1/publish and GET /health at the same concurrency (server CPU per publish
    against /health's). A publish counts only if the server answers 200 with
    14 inserted keys, and the database must hold every acknowledged key.
    """
    with _benchmark_errors(void=publish_bench.PublishMismatchError), progress() as shown:
        shown.step("running the benchmark")
        result = publish_bench.run_publish_benchmark(
            publishes,
            concurrency=concurrency,
            database=database,
            database_url=database_url,
            server_workers=server_workers,
            time_limit=time_limit,
        )

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_publish(result)
    _exit_if_failed(result.publishes_failed, result.warmup_errors, "publishes")


@bench_app.command("export")
def export(
    keys: Annotated[
        int, typer.Option("--keys", min=1, help="Keys seeded into one export window.")
    ] = 1_000_000,
    database: Annotated[
        Database, typer.Option("--database", help="Where the keys are stored.")
    ] = Database.POSTGRESQL,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export N stored keys as one batch of signed files; compare with a bare SELECT.

    Seeds the keys into a fresh schema (or SQLite file), then in fresh processes runs the
    export worker and a bare SELECT of the same rows, and reads the files back to check
    every key is there. Reports keys/s, the ratio to the SELECT and peak memory.
    """
    with _benchmark_errors(), progress() as shown:
        shown.step("running the benchmark")
        result = export_bench.run_export_benchmark(
            keys=keys, database=database, postgres_url=database_url or DEFAULT_POSTGRES_URL
        )
    summary = {
        "database": result.database.value,
        "keys": result.keys,
        "files": result.files,
        "keys_in_files": result.keys_in_files,
        "export_seconds": round(result.export_seconds, 3),
        "keys_per_second": round(result.keys_per_second),
        "bare_select_seconds": round(result.select_seconds, 3),
        "export_to_select_ratio": round(result.select_ratio, 2),
        "export_peak_mb": round(result.export_peak_mb, 1),
        "interpreter_baseline_mb": round(result.baseline_peak_mb, 1),
        "phases_seconds": {name: round(value, 3) for name, value in result.phases.items()},
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for name, value in summary.items():
        typer.echo(f"{name}: {value}")


@bench_app.command("import")
def import_(
    keys: Annotated[
        int, typer.Option("--keys", min=1, help="Keys exported by the peer, then imported.")
    ] = 1_000_000,
    database: Annotated[
        Database, typer.Option("--database", help="Where both servers store keys.")
    ] = Database.POSTGRESQL,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import a generated, signed peer export of N keys end to end; compare with its export.

    A first database exports N seeded keys with the export worker (timed); a second imports
    the files from that directory with the import run (timed, with its peak memory), and
    every key must be stored. Reports keys/s, the import/export time ratio and memory, and
    on PostgreSQL the database's own write of the same rows (the floor under any import).
    """
    with _benchmark_errors(), progress() as shown:
        shown.step("running the benchmark")
        result = import_bench.run_import_benchmark(
            keys=keys, database=database, postgres_url=database_url or DEFAULT_POSTGRES_URL
        )
    summary = {
        "database": result.database.value,
        "keys": result.keys,
        "files": result.files,
        "keys_stored": result.keys_stored,
        "import_seconds": round(result.import_seconds, 3),
        "keys_per_second": round(result.keys_per_second),
        "export_seconds": round(result.export_seconds, 3),
        "import_to_export_ratio": round(result.export_ratio, 2),
        "write_floor_seconds": (
            round(result.write_floor_seconds, 3) if result.write_floor_seconds else None
        ),
        "import_to_floor_ratio": (
            round(result.floor_ratio, 2) if result.floor_ratio is not None else None
        ),
        "import_peak_mb": round(result.import_peak_mb, 1),
        "export_peak_mb": round(result.export_peak_mb, 1),
        "interpreter_baseline_mb": round(result.baseline_peak_mb, 1),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for name, value in summary.items():
        typer.echo(f"{name}: {value}")


@bench_app.command("purge")
def purge(
    rows: Annotated[
        int, typer.Option("--rows", min=1, help="Expired keys seeded, then purged.")
    ] = purge_bench.DEFAULT_ROWS,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Connections publishing at once.")
    ] = purge_bench.DEFAULT_CONCURRENCY,
    database: DatabaseOption = Database.POSTGRESQL,
    database_url: DatabaseUrlOption = None,
    server_workers: ServerWorkersOption = 1,
    baseline_seconds: Annotated[
        float,
        typer.Option(
            "--baseline-seconds", min=1, max=120, help="Seconds of publishing without a purge."
        ),
    ] = purge_bench.DEFAULT_BASELINE_SECONDS,
    as_json: JsonOption = False,
) -> None:
    """Time the key server's purge of N expired keys while publishes keep coming.

    Seeds N keys uploaded 20 days ago and a tenth as many fresh ones into a server of its
    own, measures publish latency without a purge, then runs the purge-keyserver job once
    while the same publish load runs. Exits 1 if a publish failed, an expired key was
    left or a fresh one was lost; the targets (under 10 s, p99 less than 2x) are reported.
    """
    with _benchmark_errors(void=publish_bench.PublishMismatchError), progress() as shown:
        shown.step("running the benchmark")
        result = purge_bench.run_purge_benchmark(
            rows,
            concurrency=concurrency,
            database=database,
            database_url=database_url,
            server_workers=server_workers,
            baseline_seconds=baseline_seconds,
        )

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_purge(result)
    if not result.clean:
        typer.echo(
            f"benchmark failed: {result.publishes_failed:,} publishes failed, "
            f"{result.expired_rows_left:,} expired keys left, "
            f"{result.fresh_rows_kept:,} of {result.fresh_rows:,} fresh keys kept",
            err=True,
        )
        raise typer.Exit(code=1)


# ---- printing -------------------------------------------------------------------------


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


def _milliseconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.3f} ms"


def _per_request(cpu: CpuUsage) -> str:
    server = _milliseconds(cpu.server_per_request_ms)
    return f"{server} / {_milliseconds(cpu.client_per_request_ms)}"


def _cpu_rows(cpu: CpuUsage, health: HealthResult) -> list[tuple[str, str]]:
    busy = "n/a" if cpu.machine_utilization is None else f"{cpu.machine_utilization:.0%}"
    return [
        (
            "CPU: server / load generator",
            f"{_cpu(cpu.server_seconds)} / {_cpu(cpu.client_seconds)}",
        ),
        (
            "CPU: postgres / everything else",
            f"{_cpu(cpu.database_seconds)} / {_cpu(cpu.other_seconds)}",
        ),
        ("CPU per request: server / load generator", _per_request(cpu)),
        ("  the same for /health", _per_request(health.cpu)),
        ("machine busy", busy),
    ]


def _machine_rows(machine: MachineInfo, event_loop: str) -> list[tuple[str, str]]:
    return [
        ("load generator event loop", event_loop),
        ("cpu", f"{machine.cpu_model} ({machine.cores} cores)"),
        ("python", f"{machine.python_version} on {machine.platform}"),
    ]


def _print_summary(console: Console, title: str, rows: list[tuple[str, str]]) -> None:
    summary = Table(title=title, show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)


def _print_latency(
    console: Console, latencies: dict[str, LatencySummary], health: HealthResult
) -> None:
    latency = Table(title="Latency (ms)")
    for column in ("request", "count", "p50", "p95", "p99", "max"):
        latency.add_column(column, justify="left" if column == "request" else "right")
    for name, summary in latencies.items():
        latency.add_row(*_latency_row(name, summary))
    latency.add_row(*_latency_row("/health", health.latency))
    console.print(latency)


def _print_failures(
    console: Console,
    errors: dict[str, int],
    warmup_errors: dict[str, int],
    health: HealthResult,
    log_tail: str,
) -> None:
    failed = {
        **errors,
        **{f"warm-up {name}": count for name, count in warmup_errors.items()},
        **{f"/health {name}": count for name, count in health.errors.items()},
    }
    if failed:
        failures = Table(title="Failed requests")
        failures.add_column("request/code")
        failures.add_column("count", justify="right")
        for name, count in failed.items():
            failures.add_row(name, f"{count:,}")
        console.print(failures)
    if log_tail:
        console.print("[bold]server log (tail)[/bold]")
        console.print(log_tail, markup=False, highlight=False)


def _seconds(seconds: float, timed_out: bool) -> str:
    return f"{seconds:,.2f}" + (" (time limit hit)" if timed_out else "")


def _print_verification(result: verification_bench.VerificationBenchmarkResult) -> None:
    console = Console()
    health = result.health
    _print_summary(
        console,
        "Verification flow benchmark",
        [
            ("database", result.database),
            ("concurrency / server processes", f"{result.concurrency} / {result.server_workers}"),
            ("client addresses", f"{result.client_addresses}"),
            ("flows completed", f"{result.flows_completed:,} of {result.flows_requested:,}"),
            ("flows failed", f"{result.flows_failed:,}"),
            ("flows/second", f"{result.flows_per_second:,.1f}"),
            ("requests/second", f"{result.requests_per_second:,.1f}"),
            ("seconds", _seconds(result.seconds, result.timed_out)),
            ("/health requests/second", f"{health.requests_per_second:,.1f} ({health.ok:,} ok)"),
            ("certificates verified", f"{result.verified_certificates}"),
            *_cpu_rows(result.cpu, health),
            *_machine_rows(result.machine, result.event_loop),
        ],
    )
    _print_step_costs(console, result.steps, health)
    _print_latency(console, result.latency, health)
    _print_failures(console, result.errors, result.warmup_errors, health, result.server_log_tail)


def _print_publish(result: publish_bench.PublishBenchmarkResult) -> None:
    console = Console()
    health = result.health
    _print_summary(
        console,
        "Publish benchmark",
        [
            ("database", result.database),
            ("concurrency / server processes", f"{result.concurrency} / {result.server_workers}"),
            (
                "publishes accepted",
                f"{result.publishes_accepted:,} of {result.publishes_requested:,}"
                f" ({result.keys_per_publish} keys each)",
            ),
            ("publishes failed", f"{result.publishes_failed:,}"),
            ("publishes/second", f"{result.publishes_per_second:,.1f}"),
            ("seconds", _seconds(result.seconds, result.timed_out)),
            ("/health requests/second", f"{health.requests_per_second:,.1f} ({health.ok:,} ok)"),
            ("publishes/s as share of /health", f"{result.health_share:.1%}"),
            ("server CPU per publish / per /health", _ratio(result.cost_ratio)),
            (
                "keys stored / publishes checked",
                f"{result.stored_exposures:,} / {result.checked_publishes}",
            ),
            *_cpu_rows(result.cpu, health),
            *_machine_rows(result.machine, result.event_loop),
        ],
    )
    _print_latency(console, {"publish": result.latency}, health)
    _print_failures(console, result.errors, result.warmup_errors, health, result.server_log_tail)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _print_step_costs(
    console: Console, steps: dict[str, verification_bench.StepCost], health: HealthResult
) -> None:
    costs = Table(title="Each step alone: server CPU per request against /health")
    for column in ("step", "requests", "requests/s", "server CPU", "x /health"):
        costs.add_column(column, justify="left" if column == "step" else "right")
    for name, step in steps.items():
        costs.add_row(
            name,
            f"{step.ok:,} of {step.requests:,}",
            f"{step.requests_per_second:,.1f}",
            _milliseconds(step.cpu.server_per_request_ms),
            _ratio(step.cost_ratio),
        )
    costs.add_row(
        "/health",
        f"{health.ok:,}",
        f"{health.requests_per_second:,.1f}",
        _milliseconds(health.cpu.server_per_request_ms),
        "1.00x",
    )
    console.print(costs)


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def _print_purge(result: purge_bench.PurgeBenchmarkResult) -> None:
    console = Console()
    during = result.during_purge
    baseline = result.baseline
    load = "n/a" if result.load_average is None else " / ".join(map(str, result.load_average))
    job_rows = "n/a" if result.job_rows is None else f"{result.job_rows:,}"
    _print_summary(
        console,
        "Purge benchmark",
        [
            ("database", result.database),
            ("concurrency / server processes", f"{result.concurrency} / {result.server_workers}"),
            ("expired keys deleted / seeded", f"{result.rows_deleted:,} / {result.rows:,}"),
            ("  the job says it deleted", job_rows),
            ("expired keys left", f"{result.expired_rows_left:,}"),
            ("fresh keys kept", f"{result.fresh_rows_kept:,} of {result.fresh_rows:,}"),
            ("purge seconds", f"{result.purge_seconds:,.2f}"),
            ("rows/second", f"{result.rows_per_second:,.0f}"),
            (
                "publish p99: baseline / purge",
                f"{baseline.latency.p99_ms:,.1f} / {during.latency.p99_ms:,.1f} ms",
            ),
            ("p99 ratio", f"{result.p99_ratio:.2f}x"),
            (
                "publishes/s: baseline / purge",
                f"{baseline.publishes_per_second:,.1f} / {during.publishes_per_second:,.1f}",
            ),
            ("publishes during the purge", f"{during.publishes:,} ({during.failed:,} failed)"),
            ("publishes failed (all phases)", f"{result.publishes_failed:,}"),
            (
                f"purge under {result.target_purge_seconds:.0f} s",
                _yes(result.purge_within_target),
            ),
            (f"p99 ratio under {result.target_p99_ratio:.0f}x", _yes(result.p99_within_target)),
            ("published keys checked", f"{result.published_keys_checked:,}"),
            ("seeding seconds (not timed)", f"{result.seed_seconds:,.1f}"),
            ("purge CPU: server / bench", _cpu_pair(during.cpu)),
            (
                "purge CPU: postgres / others",
                f"{_cpu(during.cpu.database_seconds)} / {_cpu(during.cpu.other_seconds)}",
            ),
            ("machine busy: baseline / purge", _busy(baseline.cpu, during.cpu)),
            ("load average at start", load),
            *_machine_rows(result.machine, result.event_loop),
        ],
    )
    _print_latency_phases(console, {"baseline": baseline, "during purge": during})
    failed = {**result.errors, **_warmup(result.warmup_errors)}
    if failed:
        failures = Table(title="Failed publishes")
        failures.add_column("phase request/code")
        failures.add_column("count", justify="right")
        for name, count in failed.items():
            failures.add_row(name, f"{count:,}")
        console.print(failures)
    if result.server_log_tail:
        console.print("[bold]server log (tail)[/bold]")
        console.print(result.server_log_tail, markup=False, highlight=False)


def _warmup(errors: dict[str, int]) -> dict[str, int]:
    return {f"warm-up {name}": count for name, count in errors.items()}


def _cpu_pair(cpu: CpuUsage) -> str:
    return f"{_cpu(cpu.server_seconds)} / {_cpu(cpu.client_seconds)}"


def _busy(*usages: CpuUsage) -> str:
    return " / ".join(
        "n/a" if usage.machine_utilization is None else f"{usage.machine_utilization:.0%}"
        for usage in usages
    )


def _print_latency_phases(console: Console, phases: dict[str, purge_bench.PhaseResult]) -> None:
    latency = Table(title="Publish latency (ms)")
    for column in ("phase", "count", "p50", "p95", "p99", "max"):
        latency.add_column(column, justify="left" if column == "phase" else "right")
    for name, phase in phases.items():
        latency.add_row(*_latency_row(name, phase.latency))
    console.print(latency)
