"""Lazily mounted sub-commands (exposure.cli.lazy), and ``exposure bench`` mounted that way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from exposure.cli import ExposureGroup
from exposure.cli.lazy import LazyCommand, LazyGroup

# ---- the mechanism, on a module written here ----------------------------------------------

_MODULE = "lazy_target_for_tests"


@pytest.fixture
def target_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module with a one-command Typer app and a non-app, importable but not imported."""
    (tmp_path / f"{_MODULE}.py").write_text(
        textwrap.dedent(
            """
            import typer

            greet_app = typer.Typer(help="Greet, at length.")
            not_an_app = 42


            @greet_app.command("hello")
            def hello(name: str = "world") -> None:
                typer.echo(f"hello {name}")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, _MODULE, raising=False)
    return _MODULE


def _app(*lazy: LazyCommand) -> typer.Typer:
    group = type("Group", (LazyGroup,), {"lazy_commands": lazy})
    # A callback makes it a group even with one eager command.
    app = typer.Typer(cls=group, callback=lambda: None, add_completion=False)

    @app.command("eager")
    def eager() -> None:
        typer.echo("eager ran")

    return app


def _greet(target: str = f"{_MODULE}:greet_app") -> LazyCommand:
    return LazyCommand("greet", target, "Greet someone.")


@pytest.mark.usefixtures("target_module")
def test_help_lists_a_lazy_command_without_importing_it() -> None:
    outcome = CliRunner().invoke(_app(_greet()), ["--help"], env={"COLUMNS": "100"})

    assert outcome.exit_code == 0, outcome.output
    assert "eager" in outcome.output
    assert "greet" in outcome.output
    assert "Greet someone." in outcome.output
    assert _MODULE not in sys.modules


@pytest.mark.usefixtures("target_module")
def test_a_lazy_command_is_imported_when_it_runs() -> None:
    app = _app(_greet())
    runner = CliRunner()

    ran = runner.invoke(app, ["greet", "hello", "--name", "you"])
    assert ran.exit_code == 0, ran.output
    assert ran.output == "hello you\n"
    assert _MODULE in sys.modules
    # Mounted as a group even with one command, with its own full help.
    helped = runner.invoke(app, ["greet", "--help"])
    assert helped.exit_code == 0, helped.output
    assert "Greet, at length." in helped.output
    assert "hello" in helped.output
    assert runner.invoke(app, ["eager"]).output == "eager ran\n"


@pytest.mark.usefixtures("target_module")
def test_a_mistyped_name_still_gets_the_lazy_command_suggested() -> None:
    outcome = CliRunner().invoke(_app(_greet()), ["gret"])

    assert outcome.exit_code == 2
    assert "Did you mean 'greet'?" in outcome.output
    assert _MODULE not in sys.modules


@pytest.mark.usefixtures("target_module")
def test_a_target_that_is_not_a_typer_app_is_refused() -> None:
    with pytest.raises(TypeError, match="not a Typer app"):
        _greet(f"{_MODULE}:not_an_app").load()


def test_a_name_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        typer.main.get_command(_app(LazyCommand("eager", "x:y", "Clashes.")))


# ---- exposure bench ------------------------------------------------------------------------


def _exposure(*arguments: str) -> tuple[str, list[str]]:
    """Run ``exposure arguments`` in a fresh interpreter: its output, benchmark modules loaded."""
    script = (
        "import json, sys\n"
        "from exposure.cli import app\n"
        "try:\n"
        f"    app({list(arguments)!r}, prog_name='exposure')\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'benchmarks')\n"
        "print(json.dumps(loaded))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "120"},
        timeout=120,
    )
    output, _, last = completed.stdout.rstrip("\n").rpartition("\n")
    return output, json.loads(last)


def test_exposure_help_lists_bench_without_importing_the_benchmarks() -> None:
    output, loaded = _exposure("--help")

    assert "bench" in output
    assert "Measure the hot paths" in output
    assert loaded == []


def test_exposure_bench_imports_the_benchmarks_when_called() -> None:
    output, loaded = _exposure("bench", "--help")

    for command in ("rpi", "verification", "publish", "export", "purge"):
        assert command in output
    assert "benchmarks.cli" in loaded


def test_the_listed_help_of_bench_is_its_own() -> None:
    from benchmarks.cli import bench_app

    (bench,) = (lazy for lazy in ExposureGroup.lazy_commands if lazy.name == "bench")
    assert bench.help == bench_app.info.help
