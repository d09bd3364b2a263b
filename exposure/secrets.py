"""Server secrets that come from settings or, in the embedded shape, from a file made once.

A secret is a list of base64 keys, newest first, so it can be rotated: new data uses the
first, old data is still checked against the rest.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from crypto.randomness import random_bytes

#: Keyed hashes of codes and API keys are only as strong as their key.
MINIMUM_SECRET_BYTES = 32


def decode_secret_keys(raw: str) -> list[bytes]:
    """Decode a comma-separated list of base64 keys; raise ``ValueError`` if one is weak."""
    keys = []
    for part in raw.split(","):
        text = part.strip()
        if not text:
            continue
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("secret keys must be standard base64") from error
        if len(key) < MINIMUM_SECRET_BYTES:
            raise ValueError(f"each secret key needs at least {MINIMUM_SECRET_BYTES} bytes")
        keys.append(key)
    return keys


def load_or_create_secret_keys(configured: str | None, secrets_file: Path) -> list[bytes]:
    """The keyed-hash secrets, newest first: from settings, else from a file made once."""
    if configured is not None:
        return decode_secret_keys(configured)
    if not secrets_file.exists():
        secrets_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = base64.b64encode(random_bytes(MINIMUM_SECRET_BYTES)).decode()
        try:
            descriptor = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(fresh + "\n")
    return decode_secret_keys(secrets_file.read_text().replace("\n", ","))
