"""The console's languages: Vietnamese (the default) and English.

Every text a page shows is an English message id wrapped in ``_()`` in a template, or one
of the message ids below (error codes, refusals, roles). The catalogs are gettext ``.po``
files beside this module, read directly with Babel at start-up (nothing to compile); a
message missing from a catalog shows in English, and the test
``tests/unit/verification/console/test_i18n.py`` fails on it.

Example::

    _ = translator("vi")
    _("Sign in")  # "Đăng nhập"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources

from babel.messages.pofile import read_po

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"

#: What a refused or failed request says, by the domain error's stable code.
ERROR_TEXTS: Mapping[str, str] = {
    "invalid_test_type": "The test result is not one of confirmed, likely or negative.",
    "unsupported_test_type": "This realm does not issue codes for this test result.",
    "missing_date": "This realm needs a symptom onset or test date.",
    "invalid_date": "The date must be a day within the last 28 days, as YYYY-MM-DD.",
    "quota_exceeded": "The realm has issued its codes for today; try again tomorrow.",
    "uuid_already_exists": "A code with this id was already issued.",
    "code_not_found": "No code with this id in your realm.",
    "code_already_claimed": "The code was already used.",
    "unparsable_request": "The request could not be read (a wrong id or a malformed row).",
    "second_factor_exists": "Your account already has an authenticator app.",
    "second_factor_code_wrong": "That is not the app's current code. Type the newest one.",
    "second_factor_form_invalid": "This page expired or was changed. Start again.",
}
UNKNOWN_ERROR = "The request failed."

REFUSED_CROSS_SITE = "This form was sent from another site and was refused."
REFUSED_CSRF = "This form expired or was not sent by this page. Reload it."
REFUSED_NOT_LAB = "Your role cannot issue codes."
REFUSED_NOT_AUDITOR = "Your role cannot read the retention log."
REFUSED_NOT_ADMIN = "Only a realm admin can see this page."
ADMIN_BAD_KEY_KIND = "An API key is an admin, device or auditor key."
ADMIN_BAD_KEY_NAME = "A key name has 1 to 100 printable characters."
ADMIN_NOT_A_NUMBER = "Type a whole number."
ADMIN_NO_SUCH_KEY = "No API key with this id in your realm."
ADMIN_BAD_ROLE = "Choose a role."
ADMIN_STAFF_REFUSED = "The account was not created:"
ADMIN_NOT_YOURSELF = "You cannot disable your own account."
ADMIN_NOT_YOUR_OWN_APP = "You cannot remove your own authenticator app; another realm admin can."
ADMIN_NO_SUCH_STAFF = "No staff account with this username in your realm."
ADMIN_LIMITS_REFUSED = "The settings were not changed:"
ADMIN_KEY_DISABLED = "The API key is disabled."
ADMIN_STAFF_CREATED = "The staff account is created."
ADMIN_STAFF_DISABLED = "The staff account is disabled and signed out."
ADMIN_APP_REMOVED = (
    "The authenticator app is removed and the account signed out; its owner can add a new one."
)
ADMIN_LIMITS_CHANGED = "The code settings are saved."
#: Message ids of what a realm admin's change can be refused for, or did.
ADMIN_REFUSALS = (
    ADMIN_BAD_KEY_KIND,
    ADMIN_BAD_KEY_NAME,
    ADMIN_NOT_A_NUMBER,
    ADMIN_NO_SUCH_KEY,
    ADMIN_BAD_ROLE,
    ADMIN_STAFF_REFUSED,
    ADMIN_NOT_YOURSELF,
    ADMIN_NOT_YOUR_OWN_APP,
    ADMIN_NO_SUCH_STAFF,
    ADMIN_LIMITS_REFUSED,
    ADMIN_KEY_DISABLED,
    ADMIN_STAFF_CREATED,
    ADMIN_STAFF_DISABLED,
    ADMIN_APP_REMOVED,
    ADMIN_LIMITS_CHANGED,
)
BULK_NO_FILE = "Choose a CSV file."
BULK_TOO_LARGE = "The file is too large."
BULK_NOT_UTF8 = "The file is not UTF-8 text."

ROLE_NAMES: Mapping[str, str] = {
    "lab": "lab staff",
    "realm_admin": "realm admin",
    "auditor": "auditor",
}

#: Where a signing key stands in its rotation (verification.console.admin).
KEY_STATES = ("retired", "published, not yet signing", "signing until replaced", "signing")

#: Message ids used from Python (the templates' own are found in the templates).
CODE_MESSAGES = frozenset(
    [
        *ERROR_TEXTS.values(),
        UNKNOWN_ERROR,
        REFUSED_CROSS_SITE,
        REFUSED_CSRF,
        REFUSED_NOT_LAB,
        REFUSED_NOT_AUDITOR,
        REFUSED_NOT_ADMIN,
        *KEY_STATES,
        *ADMIN_REFUSALS,
        BULK_NO_FILE,
        BULK_TOO_LARGE,
        BULK_NOT_UTF8,
        *ROLE_NAMES.values(),
    ]
)

Translate = Callable[[str], str]


def error_text(code: str) -> str:
    """The message id that explains a domain error code."""
    return ERROR_TEXTS.get(code, UNKNOWN_ERROR)


@cache
def catalog(language: str) -> Mapping[str, str]:
    """The ``.po`` catalog of ``language``: message id → translation (non-empty ones)."""
    if language not in LANGUAGES:
        raise ValueError("unsupported language")
    path = resources.files(__name__) / f"{language}.po"
    with path.open("rb") as stream:
        parsed = read_po(stream, locale=language)
    return {
        str(message.id): str(message.string)
        for message in parsed
        if message.id and isinstance(message.string, str) and message.string
    }


def translator(language: str) -> Translate:
    """``_`` for ``language``: the translation, or the English id when there is none."""
    messages = catalog(language)

    def translate(message: str) -> str:
        return messages.get(message, message)

    return translate


def best_language(accept_language: str) -> str:
    """The first supported language an ``Accept-Language`` header names, else the default."""
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        primary = tag.split("-")[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE
