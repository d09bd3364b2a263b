"""Where a service's key-encryption keys (KEKs) come from: its setting, or in the embedded
shape a file made once beside its SQLite database.

A KEK is a random secret of at least 32 bytes, written as standard base64; a setting may
list several, comma-separated, newest first, while one is being rotated out. A service on
PostgreSQL must be given its KEK (every replica the same): a replica that made its own
would seal keys no other replica can open. The embedded default (SQLite, one host) makes
one on first start, atomically, so two worker processes starting together agree on it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from pathlib import Path

from crypto.randomness import random_bytes
from crypto.sealing import MINIMUM_SECRET_LENGTH
from exposure.keys.errors import KeyEncryptionKeyMissing

__all__ = ["decode_keks", "embedded_kek_path", "kek_setting_name", "load_keks", "new_kek"]


def kek_setting_name(service: str) -> str:
    """The environment variable that holds ``service``'s KEKs."""
    return f"EXPOSURE_{service.upper()}_KEK"


def embedded_kek_path(data_dir: Path, service: str) -> Path:
    return data_dir / "secrets" / f"{service}.kek"


def new_kek() -> str:
    """A fresh KEK, as the setting spells it."""
    return base64.b64encode(random_bytes(MINIMUM_SECRET_LENGTH)).decode("ascii")


def decode_keks(raw: str) -> list[bytes]:
    """Decode comma-separated base64 KEKs, newest first; raise ``ValueError`` if one is bad."""
    keks = []
    for part in raw.split(","):
        text = part.strip()
        if not text:
            continue
        try:
            kek = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("a KEK must be standard base64") from error
        if len(kek) < MINIMUM_SECRET_LENGTH:
            raise ValueError(f"a KEK needs at least {MINIMUM_SECRET_LENGTH} random bytes")
        keks.append(kek)
    if not keks:
        raise ValueError("the KEK setting is set but holds no key")
    return keks


def write_file_once(path: Path, content: str) -> None:
    """Create ``path`` with ``content`` (mode 0600) unless it exists; readers never see it
    half-written, because the content is complete before the name appears."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        # Another process may have made it first; everyone then reads theirs.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def load_keks(
    service: str, configured: str | None, *, embedded: bool, data_dir: Path
) -> list[bytes]:
    """``service``'s KEKs, newest first: the setting, else (embedded only) the file.

    Raises :class:`KeyEncryptionKeyMissing` when a service outside the embedded shape has
    none, and ``ValueError`` for a malformed value.
    """
    setting = kek_setting_name(service)
    if configured is not None and configured.strip():
        return decode_keks(configured)
    if not embedded:
        raise KeyEncryptionKeyMissing(
            f"{setting} is not set: the {service} service keeps its private keys in its "
            "database sealed under it, and every process of the service needs the same one "
            "(make one with `exposure admin keys new-kek`)"
        )
    path = embedded_kek_path(data_dir, service)
    if not path.exists():
        write_file_once(path, new_kek() + "\n")
    return decode_keks(path.read_text(encoding="ascii"))
