"""Access to ``../shared/interop``: real files from deployed GAEN systems.

The files are never copied into this repository. A test that needs one asks for it through
:func:`interop_path`; when the folder is absent the test is skipped with the reason, except
under ``CI=true``, where a missing file is a failure (CI always has ``../shared`` beside the
clone).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
INTEROP_DIR = Path(
    os.environ.get("EXPOSURE_INTEROP_DIR", REPOSITORY_ROOT.parent / "shared" / "interop")
)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def interop_path(relative: str) -> Path:
    """Return the path of ``relative`` inside the interop folder, or skip/fail if absent."""
    path = INTEROP_DIR / relative
    if not path.exists():
        message = f"interop file {path} is absent (../shared/interop is not beside the clone)"
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path
