"""The Ed25519 key that signs a service's retention log: from settings, else a file made once.

Every replica of a service must sign with the same key (set ``EXPOSURE_RETENTION_<SERVICE>_LOG_KEY``
in production); the embedded shape makes one under the data directory on first use. Only the
public key ever leaves the process.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from pydantic import SecretStr

from crypto.audit import SEED_LENGTH, AuditSigner
from crypto.randomness import random_bytes

__all__ = ["load_log_signer", "log_key_path"]


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


def load_log_signer(configured: SecretStr | None, path: Path) -> AuditSigner:
    """The signer from ``configured`` (base64 seed), else from ``path``, created if missing.

    Raises :class:`ValueError` for a malformed key.
    """
    if configured is not None:
        return _decode(configured.get_secret_value())
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
    return _decode(path.read_text(encoding="ascii"))
