"""A peer's index.txt: the names of its export files, one per line, oldest first.

Every line is untrusted: only a plain relative path of ordinary characters is a name (no
scheme, no absolute path, no ``..``, no hidden segment); anything else is counted and
skipped. A name listed twice counts once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ParsedIndex", "is_relative_name", "parse_index"]

_NAME = re.compile(r"[A-Za-z0-9._~/-]{1,1000}")


@dataclass(frozen=True)
class ParsedIndex:
    #: The distinct well-formed names, in the index's order.
    names: list[str]
    #: Lines that are not relative paths.
    bad_names: int
    #: Lines naming a file listed before.
    duplicates: int


def is_relative_name(name: str) -> bool:
    """Whether ``name`` is a plain relative path that stays under the export root."""
    if not _NAME.fullmatch(name) or name.startswith("/"):
        return False
    return all(segment and not segment.startswith(".") for segment in name.split("/"))


def parse_index(body: bytes) -> ParsedIndex:
    names: list[str] = []
    seen: set[str] = set()
    bad = duplicates = 0
    for raw in body.decode("utf-8", "replace").splitlines():
        name = raw.strip()
        if not name:
            continue
        if not is_relative_name(name):
            bad += 1
        elif name in seen:
            duplicates += 1
        else:
            seen.add(name)
            names.append(name)
    return ParsedIndex(names=names, bad_names=bad, duplicates=duplicates)
