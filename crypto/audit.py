"""Ed25519 signatures and a SHA-256 hash chain for the tamper-evident audit log.

Each log entry is linked to everything before it::

    link_0 = GENESIS (32 zero bytes)
    link_i = SHA-256("exposure-audit-v1" || link_(i-1) || SHA-256(entry_i))

so editing, deleting, inserting or reordering any entry changes every later link. The tag
separates this use of SHA-256 from any other; the previous link and the entry digest are
32 bytes each, so the input parses one way only. Cutting entries off the end leaves a
shorter, still consistent chain: that is why the service signs the head (the last link) with
an :class:`AuditSigner`, and an auditor checks the head it recomputes against a signed one.

Example::

    signer = AuditSigner.generate()
    head = GENESIS
    for entry in entries:
        head = chain_link(head, entry)
    signature = signer.sign(head)
    verify_ed25519(signer.public_key, verify_chain(stored, start=GENESIS), signature)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.signing import SigningKey, VerifyKey

from crypto.errors import BrokenChainAt, InvalidKey, InvalidSignature
from crypto.randomness import random_bytes

__all__ = [
    "CHAIN_DOMAIN",
    "GENESIS",
    "PUBLIC_KEY_LENGTH",
    "SEED_LENGTH",
    "SIGNATURE_LENGTH",
    "AuditSigner",
    "chain_link",
    "verify_chain",
    "verify_ed25519",
]

#: Ed25519 private seed length.
SEED_LENGTH = 32
#: Ed25519 public key length.
PUBLIC_KEY_LENGTH = 32
#: Ed25519 signature length.
SIGNATURE_LENGTH = 64
#: The link before the first entry.
GENESIS = bytes(32)
#: Domain-separation tag of the chain hash; a new construction gets a new version.
CHAIN_DOMAIN = b"exposure-audit-v1"

_LINK_LENGTH = hashlib.sha256().digest_size


class AuditSigner:
    """An Ed25519 private key that signs audit-log heads. The seed never appears in ``repr``.

    Raises :class:`InvalidKey` from :meth:`from_seed` if the seed is not 32 bytes.
    """

    __slots__ = ("__signing_key",)

    def __init__(self, signing_key: SigningKey) -> None:
        self.__signing_key = signing_key

    @classmethod
    def generate(cls) -> AuditSigner:
        """Create a signer with a fresh random key."""
        return cls.from_seed(random_bytes(SEED_LENGTH))

    @classmethod
    def from_seed(cls, seed: bytes) -> AuditSigner:
        """Load the signer whose RFC 8032 private key is ``seed``."""
        if len(seed) != SEED_LENGTH:
            raise InvalidKey
        return cls(SigningKey(bytes(seed)))

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed, for writing the key to its store."""
        return bytes(self.__signing_key)

    @property
    def public_key(self) -> bytes:
        """The 32-byte public key auditors verify with."""
        return bytes(self.__signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self.__signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"AuditSigner(public_key={self.public_key.hex()!r})"


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify an Ed25519 signature; raise :class:`InvalidSignature` if it does not hold.

    A malformed public key or signature (wrong length, not a curve point) fails the same way
    as a signature by another key or over another message.
    """
    if len(public_key) != PUBLIC_KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
        raise InvalidSignature
    try:
        VerifyKey(bytes(public_key)).verify(message, bytes(signature))
    except (NaclCryptoError, ValueError, TypeError) as exc:  # BadSignatureError included
        raise InvalidSignature from exc


def chain_link(previous_hash: bytes, entry: bytes) -> bytes:
    """Return the link that follows ``previous_hash`` when ``entry`` is appended.

    Raises :class:`ValueError` if ``previous_hash`` is not 32 bytes.
    """
    if len(previous_hash) != _LINK_LENGTH:
        raise ValueError(f"a chain link is {_LINK_LENGTH} bytes")
    entry_digest = hashlib.sha256(entry).digest()
    return hashlib.sha256(CHAIN_DOMAIN + previous_hash + entry_digest).digest()


def verify_chain(entries: Iterable[tuple[bytes, bytes]], start: bytes = GENESIS) -> bytes:
    """Recompute the chain over ``(entry, stored_link)`` pairs and return the head.

    The head is ``start`` when there are no entries. Raises :class:`BrokenChainAt` (a
    :class:`~crypto.errors.BrokenChain`) whose ``index`` is the position of the first stored
    link that does not follow from its predecessor. Raises :class:`ValueError` if ``start``
    is not 32 bytes.
    """
    head = start
    if len(head) != _LINK_LENGTH:
        raise ValueError(f"a chain link is {_LINK_LENGTH} bytes")
    for index, (entry, stored) in enumerate(entries):
        expected = chain_link(head, entry)
        if not hmac.compare_digest(expected, stored):
            raise BrokenChainAt(index)
        head = expected
    return head
