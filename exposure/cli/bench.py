"""``exposure bench ...``: measure the hot paths on this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from exposure.bench.rpi import BenchmarkMismatchError, run_rpi_benchmark

bench_app = typer.Typer(
    help="Measure the hot paths (RPI derivation) on this machine.", no_args_is_help=True
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
