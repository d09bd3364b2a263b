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

from axe_playwright_python.base import AXE_SCRIPT
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

# Runs in the page once axe is loaded: the WCAG rules and the chosen best-practice ones.
_RUN = """([tags, extra]) => axe.run(document, {
  runOnly: {type: "rule", values: [...axe.getRules(tags).map((rule) => rule.ruleId), ...extra]},
  resultTypes: ["violations"],
})"""


def accessibility_problems(page: Page) -> list[str]:
    """What the rendered page fails of axe's checks above, one line per element (empty
    when it passes): ``rule-id (impact): element selector: what is wrong``."""
    page.evaluate(AXE_SCRIPT)
    response: dict[str, Any] = page.evaluate(_RUN, [list(WCAG_TAGS), list(BEST_PRACTICE_RULES)])
    problems: list[str] = []
    for violation in response["violations"]:
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            problems.append(
                f"{violation['id']} ({violation['impact']}): {target}: {violation['help']}"
            )
    return problems
