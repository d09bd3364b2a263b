"""The accessibility check the console's browser tests run finds what it claims to find."""

from __future__ import annotations

from tests.accessibility import accessibility_problems
from tests.browser import browser_page

BROKEN = """<!doctype html><html><head><title></title></head><body>
<h1>One</h1><h3>Skipped a level</h3><h1>Two</h1>
<input id="unlabelled" name="q"><button></button><a href="/x"></a><img src="data:,">
<p style="color:#aaa;background:#fff">pale text</p><div tabindex="3">first</div>
</body></html>"""

FINE = """<!doctype html><html lang="en"><head><title>ok</title></head><body>
<h1>One</h1><h2>Two</h2><label for="q">Query</label><input id="q" name="q">
<button>Go</button><a href="/x">Somewhere</a><img src="data:," alt="">
<p style="color:#1a1a1a;background:#fff">dark text</p></body></html>"""


def test_the_check_reports_each_kind_of_problem() -> None:
    with browser_page() as page:
        page.set_content(BROKEN)
        problems = accessibility_problems(page)
        page.set_content(FINE)
        none = accessibility_problems(page)

    text = "\n".join(problems)
    for expected in (
        "html has no lang",
        "page has no title",
        "not exactly one h1",
        "heading level skipped",
        "field without a label: input#unlabelled",
        "unnamed button",
        "unnamed a",
        "image without alt",
        "contrast",
        "positive tabindex",
    ):
        assert expected in text, expected
    assert none == []
