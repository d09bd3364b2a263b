"""Both catalogs hold every message the console shows: a missing translation fails here."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from verification.console import i18n

_TEMPLATE_MESSAGE = re.compile(r"""_\((?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\)""")


def _messages_in_templates() -> set[str]:
    found: set[str] = set()
    templates = resources.files("verification.console") / "templates"
    for template in templates.iterdir():
        if template.name.endswith(".html"):
            for double, single in _TEMPLATE_MESSAGE.findall(template.read_text("utf-8")):
                found.add(double or single)
    return found


def _every_message() -> set[str]:
    return _messages_in_templates() | set(i18n.CODE_MESSAGES)


def test_the_templates_have_messages_to_translate() -> None:
    # Guards the extraction itself: a broken pattern would make the tests below vacuous.
    assert {"Sign in", "Issue code", "Retention log"} <= _messages_in_templates()


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_message_is_translated(language: str) -> None:
    catalog = i18n.catalog(language)

    missing = sorted(_every_message() - set(catalog))

    assert missing == [], f"add these to verification/console/i18n/{language}.po"


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_translations_keep_their_placeholders(language: str) -> None:
    catalog = i18n.catalog(language)
    for message in _every_message():
        placeholders = set(re.findall(r"\{\w+\}", message))
        assert set(re.findall(r"\{\w+\}", catalog[message])) == placeholders, message


def test_vietnamese_is_vietnamese() -> None:
    translate = i18n.translator("vi")

    assert translate("Sign in") == "Đăng nhập"
    assert translate("not a message id") == "not a message id"


def test_every_domain_error_code_has_a_text() -> None:
    codes = {
        "invalid_test_type",
        "unsupported_test_type",
        "missing_date",
        "invalid_date",
        "quota_exceeded",
        "uuid_already_exists",
        "code_not_found",
        "code_already_claimed",
        "unparsable_request",
    }

    assert codes <= set(i18n.ERROR_TEXTS)
    assert i18n.error_text("no_such_code") == i18n.UNKNOWN_ERROR


@pytest.mark.parametrize(
    ("header", "expected"),
    [("en-US,en;q=0.9", "en"), ("vi-VN", "vi"), ("fr, en;q=0.5", "en"), ("", "vi"), ("de", "vi")],
)
def test_the_browser_s_language_is_used_before_sign_in(header: str, expected: str) -> None:
    assert i18n.best_language(header) == expected
