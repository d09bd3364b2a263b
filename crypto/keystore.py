"""Where services keep private signing keys: behind a store that hands out signers.

:class:`KeyStore` hands out :class:`crypto.signing.Signer` objects and never private key
bytes, so a KMS can replace the file store without touching the services.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

from crypto.signing import FileSigner, Signer

_REFERENCE = re.compile(r"^[a-z0-9-]{1,100}\.pem$")


class KeyStore(Protocol):
    """Creates ECDSA P-256 keys and gives out signers for them by reference."""

    def create(self, name: str) -> str:
        """Create a key called ``name``; return the reference to store in the database."""
        ...

    def signer(self, reference: str) -> Signer:
        """The signer of a key created earlier."""
        ...

    def destroy(self, reference: str) -> bool:
        """Erase a key for good; return whether it existed (False is not an error)."""
        ...


class FileKeyStore:
    """PEM files in one directory, readable by the owner only."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._signers: dict[str, Signer] = {}

    def create(self, name: str) -> str:
        reference = f"{name}.pem"
        if not _REFERENCE.match(reference):
            raise ValueError(f"unusable key name {name!r}")
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = FileSigner.generate()
        # O_EXCL: never overwrite a key that may still sign or verify something.
        descriptor = os.open(
            self._directory / reference, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(signer.private_key_pem())
        self._signers[reference] = signer
        return reference

    def signer(self, reference: str) -> Signer:
        if not _REFERENCE.match(reference):
            raise ValueError("malformed key reference")
        cached = self._signers.get(reference)
        if cached is None:
            cached = FileSigner.from_file(self._directory / reference)
            self._signers[reference] = cached
        return cached

    def destroy(self, reference: str) -> bool:
        if not _REFERENCE.match(reference):
            raise ValueError("malformed key reference")
        self._signers.pop(reference, None)
        try:
            (self._directory / reference).unlink()
        except FileNotFoundError:
            return False
        return True
