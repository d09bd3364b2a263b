"""A real headless browser for tests: the system's Chromium, driven by Playwright.

Playwright never downloads a browser here (the machines have no internet at run time):
:func:`chromium_path` finds the one Debian's ``chromium`` package installs (``.ci/run``
installs it when missing), or the one ``EXPOSURE_TEST_CHROMIUM`` names. Without one a
browser test skips with the reason, except under ``CI=true``, where it fails: CI must run
it.

Example::

    with browser_page() as page:
        page.goto(url)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.interop import running_in_ci

__all__ = ["CHROMIUM_VARIABLE", "browser_page", "chromium_path"]

#: Names a Chromium (or Chrome) executable to use instead of the one on PATH.
CHROMIUM_VARIABLE = "EXPOSURE_TEST_CHROMIUM"
_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """The browser executable; skip the test (fail under CI) when there is none."""
    named = os.environ.get(CHROMIUM_VARIABLE, "").strip()
    if named:
        return named
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = f"browser tests need Chromium (apt-get install chromium) or {CHROMIUM_VARIABLE}"
    if running_in_ci():
        pytest.fail(f"{reason}; CI must run them")
    pytest.skip(reason)


@contextmanager
def browser_page(*, width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A fresh page of a headless Chromium, closed with its browser afterwards."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # Tests run as root in containers, where Chromium's sandbox cannot start.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()
