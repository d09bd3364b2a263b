"""The architecture's import rules, checked on the source: a violation fails the suite.

- ``crypto`` imports no HTTP, database or project code.
- ``exposure`` does not import the services, except the CLI and the app factory, which
  compose them.
- ``keyserver`` and ``verification`` never import each other.
- No product package imports ``benchmarks``, not even inside a function: ``exposure bench``
  names it as a string and imports it only when called (``exposure/cli/lazy.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "crypto": (
        "exposure",
        "keyserver",
        "verification",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "alembic",
        "httpx",
        "uvicorn",
    ),
    "exposure": ("keyserver", "verification"),
    "keyserver": ("verification",),
    "verification": ("keyserver",),
}

#: Modules allowed to compose the services.
COMPOSERS = ("exposure/cli/", "exposure/app.py", "exposure/services.py")

#: The product; the benchmarks sit beside it and may import it, never the other way.
PRODUCT = ("exposure", "keyserver", "verification", "crypto")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def _sources(package: str) -> list[Path]:
    return sorted(
        path for path in (ROOT / package).rglob("*.py") if not path.name.endswith("_pb2.py")
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_architecture(package: str) -> None:
    violations = []
    for path in _sources(package):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(COMPOSERS):
            continue
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top in FORBIDDEN[package]:
                violations.append(f"{relative} imports {module}")

    assert violations == []


def test_the_checker_sees_imports() -> None:
    # Guard against a checker that silently finds nothing.
    assert "sqlalchemy" in _imported_modules(ROOT / "exposure" / "db" / "lease.py")


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_never_imports_the_benchmarks(package: str) -> None:
    # No composer exemption: the CLI mounts `exposure bench` by name (exposure/cli/lazy.py).
    violations = [
        f"{path.relative_to(ROOT).as_posix()} imports {module}"
        for path in _sources(package)
        for module in _imported_modules(path)
        if module.split(".")[0] == "benchmarks"
    ]

    assert violations == []


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "def late():\n"
        "    import benchmarks.cli\n"
        "    from benchmarks import purge\n"
        "    from benchmarks.harness import Database\n"
    )

    assert _imported_modules(source) == {"benchmarks.cli", "benchmarks", "benchmarks.harness"}
