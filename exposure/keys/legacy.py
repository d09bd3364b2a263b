"""Moving keys that earlier versions kept outside the database into it (``db upgrade``).

Before keys lived in ``sealed_keys``, each service kept them beside its data directory:
private signing keys as PEM files under ``$EXPOSURE_DATA_DIR/keys/<service>/``, its
secrets and its retention-log key in files under ``$EXPOSURE_DATA_DIR/secrets/`` or in
settings (``EXPOSURE_VERIFICATION_SECRET_KEYS``, ``EXPOSURE_KEYSERVER_REVISION_TOKEN_AAD``,
``EXPOSURE_KEYSERVER_REVISION_SECRETS``, ``EXPOSURE_RETENTION_<SERVICE>_LOG_KEY``). A
replica on another host had none of them. ``exposure db upgrade`` (and ``serve`` when it
migrates) reads whatever of these it finds, seals it under the service's KEK in the
service's database, and once that is committed deletes the files it read. Running it again
finds nothing more to do; settings that are still set are then simply no longer read.

Each service's bundle module says which of its rows name key files and what its secrets
are; this module reads and imports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from crypto.audit import SEED_LENGTH, AuditSigner
from crypto.encoding import decode_base64_lenient
from crypto.errors import InvalidKey
from crypto.signing import FileSigner
from exposure.keys.keystore import LOG_PURPOSE, ServiceKeyStore
from exposure.keys.store import keys_of_purpose

__all__ = [
    "LegacyImport",
    "LegacySources",
    "import_log_keys",
    "import_secrets",
    "import_signing_key_files",
    "legacy_log_key_variable",
    "read_secrets",
]


def legacy_log_key_variable(service: str) -> str:
    return f"EXPOSURE_RETENTION_{service.upper()}_LOG_KEY"


@dataclass(frozen=True)
class LegacySources:
    """Where one service's earlier keys may be: its data directory and its environment."""

    data_dir: Path
    environment: Mapping[str, str]

    def secrets_file(self, name: str) -> Path:
        return self.data_dir / "secrets" / name

    def key_directory(self, service: str) -> Path:
        return self.data_dir / "keys" / service

    def setting(self, variable: str) -> str | None:
        value = self.environment.get(variable, "").strip()
        return value or None


@dataclass
class LegacyImport:
    """What one import did; ``files`` are deleted only after the transaction commits."""

    service: str
    imported: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    #: Key references a service row names that neither the database nor a file holds.
    missing: list[str] = field(default_factory=list)

    def delete_files(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)


def _decode_list(text: str, what: str) -> list[bytes]:
    values = []
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        try:
            values.append(decode_base64_lenient(part.strip()))
        except ValueError as error:
            raise ValueError(f"the earlier {what} is not base64") from error
    return values


def read_secrets(
    sources: LegacySources, *, variable: str | None, file_name: str, what: str
) -> tuple[list[bytes], Path | None]:
    """The values of an earlier setting (preferred, as the earlier version did) or file."""
    path = sources.secrets_file(file_name)
    configured = sources.setting(variable) if variable else None
    if configured is not None:
        return _decode_list(configured, what), path if path.exists() else None
    if path.exists():
        return _decode_list(path.read_text(encoding="ascii"), what), path
    return [], None


def import_secrets(
    session: Session,
    keys: ServiceKeyStore,
    sources: LegacySources,
    report: LegacyImport,
    *,
    purpose: str,
    variable: str | None,
    file_name: str,
    now: datetime,
) -> list[bytes]:
    """Import an earlier list of secrets (newest first) unless the database has some.

    Returns the secrets read (even when the database already had its own), for callers
    that must open data sealed under them.
    """
    values, path = read_secrets(sources, variable=variable, file_name=file_name, what=purpose)
    if values and not keys_of_purpose(session, keys.service, purpose):
        # Oldest first: at one creation time the later id is the newer secret.
        for index, value in reversed(list(enumerate(values, start=1))):
            name = f"{purpose}-imported-{index}"
            if keys.import_secret(session, purpose, name, value, now=now):
                report.imported.append(name)
    if path is not None:
        report.files.append(path)
    return values


def import_log_keys(
    session: Session,
    keys: ServiceKeyStore,
    sources: LegacySources,
    report: LegacyImport,
    *,
    now: datetime,
) -> None:
    """Import the earlier retention-log keys (newest first) unless the database has one."""
    seeds, path = read_secrets(
        sources,
        variable=legacy_log_key_variable(keys.service),
        file_name=f"{keys.service}-retention-log.key",
        what="retention-log key",
    )
    if seeds and not keys_of_purpose(session, keys.service, LOG_PURPOSE):
        signers = []
        for seed in seeds:
            if len(seed) != SEED_LENGTH:
                raise ValueError(f"an earlier retention-log key is not a {SEED_LENGTH}-byte seed")
            signers.append(AuditSigner.from_seed(seed))
        for index, signer in reversed(list(enumerate(signers, start=1))):
            name = f"{LOG_PURPOSE}-imported-{index}"
            if keys.import_log_key(session, name, signer, now=now):
                report.imported.append(name)
        for name in [f"{LOG_PURPOSE}-imported-{index}" for index in range(2, len(signers) + 1)]:
            keys.retire(session, name, now=now)
    if path is not None:
        report.files.append(path)


def import_signing_key_files(
    session: Session,
    keys: ServiceKeyStore,
    sources: LegacySources,
    report: LegacyImport,
    *,
    references: Iterable[str],
    now: datetime,
) -> None:
    """Import the PEM file of every reference the database holds no key for."""
    directory = sources.key_directory(keys.service)
    for reference in references:
        if keys.holds(session, reference):
            continue
        path = directory / reference
        if "/" in reference or not path.is_file():
            report.missing.append(reference)
            continue
        try:
            signer = FileSigner.from_file(path)
        except InvalidKey as error:
            raise ValueError(f"the earlier key file {path} is not a P-256 private key") from error
        if keys.import_signing_key(session, reference, signer, now=now):
            report.imported.append(reference)
        report.files.append(path)
