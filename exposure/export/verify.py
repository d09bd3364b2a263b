"""Check the ECDSA signatures of an export against public keys.

Each ``TEKSignature`` is an ECDSA P-256 signature over SHA-256 of the raw export.bin, header
included (§4.4). The ``signature_algorithm`` label is informational only: every deployed
producer signs with P-256/SHA-256, and at least one Google sample labels its signature
``"ECDSA p-256 SHA-256"`` instead of the OID, so the label neither selects nor vetoes the check.

Two entry points:

- :func:`verify_signatures` reports, signature by signature, which candidate keys verify it
  (for tooling such as ``exposure export inspect``);
- :func:`verify_export` is the strict gate an importer uses: it returns the signature that
  verified or raises the opaque :class:`~exposure.export.errors.InvalidExportSignature`.

Example::

    parsed = read_export(data)
    verify_export(parsed, load_public_key(peer_pem))   # raises unless a signature verifies
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from crypto.errors import InvalidSignature
from crypto.signing import verify_signature
from exposure.export.errors import InvalidExportSignature
from exposure.export.model import ExportSignature, ParsedExport, SignatureCheck


def check_signatures(
    message: bytes,
    signatures: Sequence[ExportSignature],
    public_keys: Sequence[EllipticCurvePublicKey],
) -> list[SignatureCheck]:
    """Check every signature over ``message`` against every key; one result per signature.

    Works for any blob signed with a ``TEKSignatureList``, not only export.bin. Never raises
    for a bad signature: a failure is a :class:`SignatureCheck` with empty ``verified_by``.
    """
    checks: list[SignatureCheck] = []
    for index, signature in enumerate(signatures):
        verified_by: list[int] = []
        for key_index, public_key in enumerate(public_keys):
            try:
                verify_signature(public_key, message, signature.signature)
            except InvalidSignature:
                continue
            verified_by.append(key_index)
        checks.append(
            SignatureCheck(index=index, signature=signature, verified_by=tuple(verified_by))
        )
    return checks


def verify_signatures(
    parsed: ParsedExport, public_keys: Sequence[EllipticCurvePublicKey]
) -> list[SignatureCheck]:
    """Check each signature of ``parsed`` against each key, over the raw export.bin bytes.

    Returns an empty list for an unsigned export. Never raises for a bad signature.
    """
    return check_signatures(parsed.export_bin, parsed.signatures, public_keys)


def verify_export(parsed: ParsedExport, public_key: EllipticCurvePublicKey) -> ExportSignature:
    """Return the first signature of ``parsed`` that ``public_key`` verifies.

    Raises :class:`InvalidExportSignature` when none does, including when the export carries
    no signature at all; the error does not say which of those happened.
    """
    for check in verify_signatures(parsed, [public_key]):
        if check.verified:
            return check.signature
    raise InvalidExportSignature
