"""Why a service cannot use its keys; each message names the setting an operator changes.

These are operator errors, raised at start-up or by an admin command, never answers to a
client: a request that meets one is an internal error.
"""

from __future__ import annotations


class KeysUnavailable(Exception):  # noqa: N818 - reads as a condition
    """A service's private keys or secrets cannot be used."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KeyEncryptionKeyMissing(KeysUnavailable):
    """No KEK is configured where one is required (a service on PostgreSQL)."""


class KeysDoNotOpen(KeysUnavailable):
    """A stored key is sealed under a KEK that is not configured, or was damaged."""


class KeyNotFound(KeysUnavailable):
    """A service row names a key that its database does not hold."""
