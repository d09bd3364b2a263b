"""A reasoned subset of WCAG 2.1 AA checks, run in the browser on a rendered page.

Not axe-core (not vendored yet): the checks that catch what server-rendered forms get
wrong most often, each tied to its success criterion:

- 3.1.1 the page names its language (``<html lang>``);
- 2.4.2 the page has a title; 1.3.1 / 2.4.6 one ``h1`` and no skipped heading level;
- 1.3.1 / 3.3.2 / 4.1.2 every visible form field has a label (``<label for>``, a wrapping
  label, ``aria-label`` or ``aria-labelledby``);
- 4.1.2 / 2.4.4 every button and link has a name;
- 1.1.1 every image has ``alt``;
- 1.4.3 text contrasts with its background at least 4.5:1 (3:1 for large text), the
  background read from the nearest ancestor with an opaque one;
- 2.1.1 nothing takes itself out of the keyboard order with a positive ``tabindex``.

Example::

    assert accessibility_problems(page) == []
"""

from __future__ import annotations

from playwright.sync_api import Page

__all__ = ["accessibility_problems"]

_SCRIPT = r"""
() => {
  const problems = [];
  const visible = (el) => {
    const style = getComputedStyle(el);
    return style.display !== "none" && style.visibility !== "hidden" &&
      el.getClientRects().length > 0;
  };
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.name ? "[name=" + el.name + "]" : "");
  if (!document.documentElement.lang) problems.push("html has no lang");
  if (!document.title.trim()) problems.push("page has no title");
  const headings = [...document.querySelectorAll("h1,h2,h3,h4,h5,h6")];
  if (headings.filter((h) => h.tagName === "H1").length !== 1) {
    problems.push("not exactly one h1");
  }
  let level = 0;
  for (const h of headings) {
    const next = Number(h.tagName[1]);
    if (next > level + 1) problems.push("heading level skipped at " + h.textContent.trim());
    level = next;
  }
  for (const field of document.querySelectorAll("input,select,textarea")) {
    if (field.type === "hidden" || !visible(field)) continue;
    const labelled = (field.id && document.querySelector('label[for="' + field.id + '"]')) ||
      field.closest("label") || field.getAttribute("aria-label") ||
      field.getAttribute("aria-labelledby");
    if (!labelled) problems.push("field without a label: " + describe(field));
  }
  for (const el of document.querySelectorAll("button,a[href]")) {
    if (!visible(el)) continue;
    const name = (el.textContent || "").trim() || el.getAttribute("aria-label") ||
      el.getAttribute("title");
    if (!name) problems.push("unnamed " + describe(el));
  }
  for (const img of document.querySelectorAll("img")) {
    if (!img.hasAttribute("alt")) problems.push("image without alt: " + img.src);
  }
  for (const el of document.querySelectorAll("[tabindex]")) {
    if (Number(el.getAttribute("tabindex")) > 0) {
      problems.push("positive tabindex on " + describe(el));
    }
  }
  const rgb = (text) => {
    const parts = text.match(/[\d.]+/g).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const luminance = (c) => {
    const channel = (v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  };
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const color = rgb(getComputedStyle(node).backgroundColor);
      if (color.a >= 1) return color;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(el) || !visible(el)) continue;
    seen.add(el);
    const style = getComputedStyle(el);
    const fore = luminance(rgb(style.color));
    const back = luminance(background(el));
    const ratio = (Math.max(fore, back) + 0.05) / (Math.min(fore, back) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      problems.push("contrast " + ratio.toFixed(2) + ":1 of " + describe(el) + " '" +
        walker.currentNode.textContent.trim().slice(0, 30) + "'");
    }
  }
  return problems;
}
"""


def accessibility_problems(page: Page) -> list[str]:
    """What the rendered page fails of the checks above (empty when it passes)."""
    problems: list[str] = page.evaluate(_SCRIPT)
    return problems
