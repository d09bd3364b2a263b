"""The Ed25519 key that signs a service's retention log: from settings, else a file made once.

Every replica of a service must sign with the same key (set
``EXPOSURE_RETENTION_<SERVICE>_LOG_KEY`` in production); the embedded shape makes one under
the data directory on first use. The setting may list several keys, newest first: the first
signs, the others are the keys it replaced, whose public halves stay published so what they
signed still verifies. Only public keys ever leave the process.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from pydantic import SecretStr

from crypto.audit import SEED_LENGTH, AuditSigner
from crypto.randomness import random_bytes

__all__ = ["load_log_signers", "log_key_path"]


def log_key_path(data_dir: Path, service: str) -> Path:
    """Where the embedded shape keeps ``service``'s log key."""
    return data_dir / "secrets" / f"{service}-retention-log.key"


def _decode(text: str) -> AuditSigner:
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("a retention-log key must be standard base64") from error
    if len(seed) != SEED_LENGTH:
        raise ValueError(f"a retention-log key is a {SEED_LENGTH}-byte Ed25519 seed")
    return AuditSigner.from_seed(seed)


def load_log_signers(configured: SecretStr | None, path: Path) -> list[AuditSigner]:
    """The log keys, newest first: from ``configured`` (comma-separated base64 seeds), else
    the one in ``path``, created if missing.

    The first signs; the others are keys it replaced, kept so their public halves are still
    published and entries they signed still verify. Raises :class:`ValueError` for a
    malformed key.
    """
    if configured is not None:
        parts = [part for part in configured.get_secret_value().split(",") if part.strip()]
        if not parts:
            raise ValueError("a retention-log key setting needs at least one key")
        return [_decode(part) for part in parts]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = base64.b64encode(random_bytes(SEED_LENGTH)).decode("ascii")
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first; use theirs
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(fresh + "\n")
    return [_decode(path.read_text(encoding="ascii"))]
