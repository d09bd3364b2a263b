"""Opaque error types, one per primitive.

Each error carries a fixed message: the reason a check failed (wrong key, bad padding,
truncated input, expired claim) is deliberately not exposed, so that an attacker probing
an endpoint learns nothing from the answer. Log the cause at the call site if needed,
never return it.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by the crypto package."""

    message = "cryptographic operation failed"

    def __init__(self) -> None:
        super().__init__(self.message)


class InvalidSignature(CryptoError):  # noqa: N818 - mirrors cryptography's own name
    """A signature (ECDSA or Ed25519) did not verify."""

    message = "signature verification failed"


class InvalidToken(CryptoError):  # noqa: N818
    """A JSON Web Token failed any check: format, algorithm, signature, claims or time."""

    message = "token verification failed"


class InvalidMac(CryptoError):  # noqa: N818
    """A message authentication code did not match."""

    message = "MAC verification failed"


class InvalidSealedData(CryptoError):  # noqa: N818
    """Sealed (AES-GCM) data could not be opened: unknown key, tampered or malformed."""

    message = "sealed data could not be opened"


class InvalidKey(CryptoError):  # noqa: N818
    """Key material could not be loaded or is not of the required type or size."""

    message = "key material is invalid"


class BrokenChain(CryptoError):  # noqa: N818
    """A hash chain link does not follow from its predecessor."""

    message = "hash chain is broken"


class BrokenChainAt(BrokenChain):
    """A :class:`BrokenChain` that tells where: ``index`` is the first link that fails.

    The position is not secret (an auditor needs it to find the damage); the message stays
    the fixed one of :class:`BrokenChain`.
    """

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
