"""WCAG 2.1 AA checks in the browser on a rendered page, by axe-core.

axe-core (Deque's engine, the one browser vendors and auditors use) comes bundled in
axe-playwright-python, so nothing is fetched at test time. A page must pass every rule
axe tags as WCAG 2.0/2.1 level A or AA (labels, names, contrast, language, titles, ARIA),
plus the few best-practice rules that catch what server-rendered forms get wrong most
often: one ``h1``, no skipped heading level, no positive ``tabindex``.

Example::

    assert accessibility_problems(page) == []
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

__all__ = ["accessibility_problems"]

#: The conformance levels the console promises (WCAG 2.1 AA, which includes level A).
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
#: Best-practice rules kept on top of the WCAG ones, each for a reason a reviewer gave.
BEST_PRACTICE_RULES = (
    "page-has-heading-one",  # 1.3.1 / 2.4.6: a screen reader's outline starts somewhere
    "heading-order",  # 1.3.1: skipped levels read as missing sections
    "tabindex",  # 2.4.3: a positive tabindex breaks the focus order of the page
)

_AXE = Axe()


def _rules_to_run(page: Page) -> list[str]:
    """axe's rule ids tagged with one of ``WCAG_TAGS``, plus ``BEST_PRACTICE_RULES``."""
    page.evaluate(_AXE.axe_script)
    rules: list[dict[str, Any]] = page.evaluate("(tags) => axe.getRules(tags)", list(WCAG_TAGS))
    return sorted({rule["ruleId"] for rule in rules} | set(BEST_PRACTICE_RULES))


def accessibility_problems(page: Page) -> list[str]:
    """What the rendered page fails of axe's checks above, one line per element (empty
    when it passes): ``rule-id (impact): element selector: what is wrong``."""
    options = {"runOnly": {"type": "rule", "values": _rules_to_run(page)}}
    response: dict[str, Any] = _AXE.run(page, options=options).response
    problems: list[str] = []
    for violation in response["violations"]:
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            problems.append(
                f"{violation['id']} ({violation['impact']}): {target}: {violation['help']}"
            )
    return problems
