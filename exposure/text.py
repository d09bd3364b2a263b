"""What the edge does with a request's text: which characters it refuses, how much it
echoes, how it ignores case.

Three rules, kept here so every API applies them the same way:

- **Control characters are refused.** A string holding one (U+0000-U+001F, U+007F-U+009F)
  is never a code, a UUID, a date or a label: NUL cannot even be stored by PostgreSQL
  (psycopg refuses it, SQLite keeps it), so without this rule the two engines would answer
  the same request differently; the others are terminal escapes that a stored label would
  replay on an operator's screen.
- **Echoes are short and quoted.** An error message may repeat a field name or a harmless
  value (a test type) so the caller can find the mistake, but never more than
  :data:`MAX_ECHOED_CHARACTERS` of it, JSON-quoted so no control character survives. Values
  that could be secrets (codes, tokens, API keys, HMACs, phone numbers) are never echoed at
  all: that is the caller's choice, not something this module can tell.
- **Case is folded in ASCII only.** Where Go's servers match a name or a value without
  regard to case (JSON field names, test types), so do we, but only for A-Z: Go also folds
  U+017F (long s) and U+212A (Kelvin sign) into ASCII letters, which no honest client
  sends and which would let two different strings name one thing.

Example::

    if has_control_character(realm_name):
        raise RealmNotFound("no such realm")
    raise BodyError(400, "unknown_field", f"unknown field {echo(name)}")
    if fold_case(text) == "confirmed": ...
"""

from __future__ import annotations

import json
import re

__all__ = ["MAX_ECHOED_CHARACTERS", "echo", "fold_case", "has_control_character"]

#: Characters of a request value an error message may repeat; longer values are cut.
MAX_ECHOED_CHARACTERS = 64

# Unicode's "Cc" category: the C0 controls (NUL included), DEL and the C1 controls.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def has_control_character(text: str) -> bool:
    """Whether ``text`` holds a control character (Unicode category Cc)."""
    return _CONTROL_CHARACTER.search(text) is not None


def echo(text: str) -> str:
    """``text`` as a JSON string literal, cut to :data:`MAX_ECHOED_CHARACTERS` characters
    (then ending in ``...``), for an error message."""
    if len(text) > MAX_ECHOED_CHARACTERS:
        text = text[:MAX_ECHOED_CHARACTERS] + "..."
    return json.dumps(text)


def fold_case(text: str) -> str:
    """``text`` with A-Z lowered and every other character kept: the one case rule."""
    return text.translate(_ASCII_LOWER)
