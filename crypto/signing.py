"""ECDSA P-256 / SHA-256 signatures with DER encoding, behind a small Signer protocol.

GAEN export files are signed this way (``export.sig`` holds ASN.1 DER ``SEQUENCE{r, s}``
over SHA-256 of the whole ``export.bin``), and phones verify them with the public key the
health authority registered with Apple and Google. Signing sits behind :class:`Signer` so a
cloud KMS or an HSM can replace the file-based key without touching callers.

Example::

    signer = FileSigner.generate()
    signature = signer.sign(b"payload")
    verify_signature(load_public_key(signer.public_key_pem()), b"payload", signature)
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.errors import InvalidKey, InvalidSignature

#: ASN.1 object identifier of ecdsa-with-SHA256, as written into ``SignatureInfo``.
ECDSA_SHA256_OID = "1.2.840.10045.4.3.2"


@runtime_checkable
class Signer(Protocol):
    """Something that signs with an ECDSA P-256 private key it may never reveal."""

    def sign(self, message: bytes) -> bytes:
        """Return the DER-encoded ECDSA signature over SHA-256 of ``message``."""
        ...

    def public_key_pem(self) -> bytes:
        """Return the matching public key as PEM (SubjectPublicKeyInfo)."""
        ...


class FileSigner:
    """A :class:`Signer` over a P-256 private key held in memory, loaded from PEM."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise InvalidKey
        self.__private_key = private_key

    @classmethod
    def generate(cls) -> FileSigner:
        """Create a signer with a fresh random P-256 key."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes, password: bytes | None = None) -> FileSigner:
        """Load a PKCS#8 or SEC1 PEM private key; raise :class:`InvalidKey` otherwise."""
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (ValueError, TypeError) as exc:
            raise InvalidKey from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidKey
        return cls(key)

    @classmethod
    def from_file(cls, path: Path, password: bytes | None = None) -> FileSigner:
        """Load the private key PEM stored at ``path``."""
        return cls.from_pem(path.read_bytes(), password)

    def private_key_pem(self) -> bytes:
        """Serialize the private key as unencrypted PKCS#8 PEM (for writing key files)."""
        return self.__private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.__private_key.public_key()

    def public_key_pem(self) -> bytes:
        return public_key_pem(self.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.__private_key.sign(message, ec.ECDSA(hashes.SHA256()))


def public_key_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Serialize a public key as SubjectPublicKeyInfo PEM."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public key from PEM; raise :class:`InvalidKey` for anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise InvalidKey from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidKey
    return key


def verify_signature(
    public_key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes
) -> None:
    """Verify a DER ECDSA/SHA-256 signature; raise :class:`InvalidSignature` if it fails.

    Malformed DER, a signature by another key and a modified message are indistinguishable
    to the caller.
    """
    try:
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (_CryptographyInvalidSignature, ValueError) as exc:
        raise InvalidSignature from exc
