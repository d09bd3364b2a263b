"""The accessibility check the console's browser tests run finds what it claims to find."""

from __future__ import annotations

from tests.accessibility import accessibility_problems
from tests.browser import browser_page

BROKEN = """<!doctype html><html><head><title></title></head><body><main>
<h1>One</h1><h3>Skipped a level</h3>
<input id="unlabelled" name="q"><button></button><a href="/x"></a><img src="data:,">
<p style="color:#aaa;background:#fff">pale text</p><div tabindex="3">first</div>
</main></body></html>"""

FINE = """<!doctype html><html lang="en"><head><title>ok</title></head><body><main>
<h1>One</h1><h2>Two</h2><label for="q">Query</label><input id="q" name="q">
<button>Go</button><a href="/x">Somewhere</a><img src="data:," alt="">
<p style="color:#1a1a1a;background:#fff">dark text</p></main></body></html>"""

NO_HEADING = """<!doctype html><html lang="en"><head><title>ok</title></head><body><main>
<p>No heading at all</p></main></body></html>"""


def _rules(problems: list[str]) -> set[str]:
    return {problem.split(" ", 1)[0] for problem in problems}


def test_the_check_reports_each_kind_of_problem() -> None:
    with browser_page() as page:
        page.set_content(BROKEN)
        problems = accessibility_problems(page)
        page.set_content(NO_HEADING)
        headless = accessibility_problems(page)
        page.set_content(FINE)
        none = accessibility_problems(page)

    assert _rules(problems) >= {
        "html-has-lang",
        "document-title",
        "heading-order",
        "label",
        "button-name",
        "link-name",
        "image-alt",
        "color-contrast",
        "tabindex",
    }
    assert any("#unlabelled" in problem for problem in problems)
    assert _rules(headless) == {"page-has-heading-one"}
    assert none == []
