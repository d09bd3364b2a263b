"""Export configurations and the signature infos that sign their files.

An :class:`~keyserver.models.ExportConfig` names one series of export files: which keys go in
(input and excluded regions, travelers), how often a batch closes (a period dividing 24 h, so
windows line up with UTC midnight), and under which ``filename_root`` the files and
``index.txt`` are written. A :class:`~keyserver.models.SignatureInfo` is one signing key and
the name phones know its public key by (``key_id``, ``key_version``).

Rotating a signing key without breaking phones (google-keyserver.md §4.3): phones verify
with the public key registered with Apple and Google, matched by id and version, and try the
signatures of a file in order. :func:`rotate_signature_info` therefore adds the new version
in front of the old one on every config that used it, and keeps signing with the old one
until ``old_valid_until`` so phones still on the old registration keep verifying meanwhile.

Functions here take the caller's session and never commit; time is always a parameter. Their
queries are in :mod:`keyserver.store.export_configs`.
"""

# Error names say what went wrong (DuplicateFilenameRoot), as keyserver.errors does.
# ruff: noqa: N818

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from crypto.signing import ECDSA_SHA256_OID
from exposure.clock import require_aware
from exposure.keys import KeyStore
from keyserver.models import ExportConfig, SignatureInfo
from keyserver.store import export_configs as export_config_store

__all__ = [
    "DAY",
    "FILENAME_ROOT_PATTERN",
    "KEY_NAME_PATTERN",
    "MAX_FILE_RECORDS",
    "MAX_SIGNATURE_INFOS",
    "DuplicateFilenameRoot",
    "DuplicateSignatureInfo",
    "ExportConfigError",
    "InvalidExportConfig",
    "UnknownSignatureInfo",
    "add_signature_info",
    "attach_signature_info",
    "config_exclude_regions",
    "config_import_regions",
    "config_import_source_ids",
    "config_input_regions",
    "config_signature_info_ids",
    "create_export_config",
    "current_signature_infos",
    "find_export_config",
    "rotate_signature_info",
    "set_imports",
    "valid_signature_infos",
]

DAY = timedelta(days=1)
#: Phones read at most this many signatures of a file (GAEN's limit).
MAX_SIGNATURE_INFOS = 10
#: The most keys Apple accepts in one file (reference issue #481); configs may go lower.
MAX_FILE_RECORDS = 750_000
#: One path segment that blob stores and the download routes accept: never "." or "..", and
#: no leading dot (the filesystem store keeps its temporary files hidden that way).
FILENAME_ROOT_PATTERN = re.compile(r"(?!\.)[A-Za-z0-9_.-]{1,100}")
#: ``verification_key_id`` / ``verification_key_version`` as GAEN allows them (§4.3).
KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,100}")
# As keyserver.service.trust: exposures find a region with LIKE '%,XX,%', where ",", "%"
# and "_" would change the meaning.
_REGION = re.compile(r"[A-Z0-9-]{1,20}")
_REGIONS_TEXT = 500
_SIGNATURE_IDS_TEXT = 200


class ExportConfigError(ValueError):
    """An export configuration change is refused; ``code`` is stable for scripts."""

    code = "export_config_error"


class InvalidExportConfig(ExportConfigError):
    code = "invalid_export_config"


class DuplicateFilenameRoot(ExportConfigError):
    code = "duplicate_filename_root"


class DuplicateSignatureInfo(ExportConfigError):
    code = "duplicate_signature_info"


class UnknownSignatureInfo(ExportConfigError):
    code = "unknown_signature_info"


def _regions(regions: Sequence[str], name: str) -> tuple[str, ...]:
    normalized = sorted({region.strip().upper() for region in regions if region.strip()})
    for region in normalized:
        if not _REGION.fullmatch(region):
            raise InvalidExportConfig(
                f"{name}: region {region!r} must be 1 to 20 letters, digits or hyphens"
            )
    if len(",".join(normalized)) > _REGIONS_TEXT:
        raise InvalidExportConfig(f"{name} must fit in {_REGIONS_TEXT} characters")
    return tuple(normalized)


def _period_seconds(period: timedelta) -> int:
    if period <= timedelta(0) or period > DAY:
        raise InvalidExportConfig("period must be between 1 second and 24 hours")
    if period % timedelta(seconds=1):
        raise InvalidExportConfig("period must be a whole number of seconds")
    if DAY % period:
        # Windows are aligned to multiples of the period since the epoch; only a divisor of
        # a day keeps them aligned to UTC midnight every day.
        raise InvalidExportConfig("period must divide 24 hours evenly (e.g. 15m, 2h, 4h, 24h)")
    return int(period.total_seconds())


def _id_list(stored: str) -> list[int]:
    return [int(part) for part in stored.split(",") if part]


def config_signature_info_ids(config: ExportConfig) -> list[int]:
    """The ids of the config's signature infos, in signing order (newest first)."""
    return _id_list(config.signature_info_ids)


def config_input_regions(config: ExportConfig) -> tuple[str, ...]:
    """The regions whose keys the config exports: its input regions, else its output region."""
    listed = tuple(region for region in config.input_regions.split(",") if region)
    return listed or (config.output_region,)


def config_import_source_ids(config: ExportConfig) -> list[int]:
    """The import sources whose keys the config re-exports; empty: every source."""
    return _id_list(config.import_source_ids)


def config_import_regions(config: ExportConfig) -> tuple[str, ...]:
    """The regions of imported keys the config re-exports; empty: its input regions."""
    return tuple(region for region in config.import_regions.split(",") if region)


def config_exclude_regions(config: ExportConfig) -> tuple[str, ...]:
    """The regions whose keys the config leaves out, even when they are in an input region."""
    return tuple(region for region in config.exclude_regions.split(",") if region)


def _newest_first(infos: Sequence[SignatureInfo]) -> list[SignatureInfo]:
    return sorted(infos, key=lambda info: (info.created_at, info.id), reverse=True)


def _encode_ids(infos: Sequence[SignatureInfo]) -> str:
    if len(infos) > MAX_SIGNATURE_INFOS:
        raise InvalidExportConfig(
            f"a config can list at most {MAX_SIGNATURE_INFOS} signature infos"
        )
    encoded = ",".join(str(info.id) for info in infos)
    if len(encoded) > _SIGNATURE_IDS_TEXT:  # pragma: no cover - 10 ids never get this long
        raise InvalidExportConfig("too many signature info ids")
    return encoded


def find_export_config(session: Session, filename_root: str) -> ExportConfig | None:
    """The config writing under ``filename_root`` (compared case-insensitively)."""
    return export_config_store.export_config_by_filename_root(session, filename_root)


def create_export_config(
    session: Session,
    *,
    filename_root: str,
    period: timedelta,
    output_region: str,
    valid_from: datetime,
    now: datetime,
    input_regions: Sequence[str] = (),
    exclude_regions: Sequence[str] = (),
    include_travelers: bool = False,
    only_non_travelers: bool = False,
    max_records: int = 500_000,
    signature_info_ids: Sequence[int] = (),
    valid_until: datetime | None = None,
    include_imported: bool = False,
    import_source_ids: Sequence[int] = (),
    import_regions: Sequence[str] = (),
) -> ExportConfig:
    """Create a series of export files under ``filename_root``.

    ``input_regions`` empty means the output region's keys; travelers' keys of any region
    join with ``include_travelers``. Keys imported from peers join with
    ``include_imported``: those of ``import_source_ids`` (every source when empty) in
    ``import_regions`` (the input regions when empty). Batches start at the period
    boundary at or before ``valid_from`` (see :mod:`keyserver.export.batcher`). Signature
    infos are listed newest first whatever order they are given in. Raises
    :class:`InvalidExportConfig`, :class:`DuplicateFilenameRoot` (roots are unique
    case-insensitively: two roots differing only in case would share a directory on macOS
    and Windows) or :class:`UnknownSignatureInfo`.
    """
    require_aware(now, "now")
    require_aware(valid_from, "valid_from")
    if not FILENAME_ROOT_PATTERN.fullmatch(filename_root):
        raise InvalidExportConfig(
            "filename root must be 1 to 100 letters, digits, '_', '.' or '-', not starting with '.'"
        )
    period_seconds = _period_seconds(period)
    outputs = _regions([output_region], "output region")
    if not outputs:
        raise InvalidExportConfig("output region is required")
    output = outputs[0]
    inputs = _regions(input_regions, "input regions")
    excludes = _regions(exclude_regions, "exclude regions")
    if set(inputs or (output,)) & set(excludes):
        raise InvalidExportConfig("a region cannot be both included and excluded")
    if include_travelers and only_non_travelers:
        raise InvalidExportConfig("include_travelers and only_non_travelers contradict")
    if isinstance(max_records, bool) or not 1 <= max_records <= MAX_FILE_RECORDS:
        raise InvalidExportConfig(f"max records must be between 1 and {MAX_FILE_RECORDS}")
    if valid_until is not None:
        require_aware(valid_until, "valid_until")
        if valid_until <= valid_from:
            raise InvalidExportConfig("valid_until must be after valid_from")
    imports = _imports(session, include_imported, import_source_ids, import_regions)
    infos = _load_signature_infos(session, signature_info_ids)
    if find_export_config(session, filename_root) is not None:
        raise DuplicateFilenameRoot(f"an export config already writes under {filename_root!r}")
    config = ExportConfig(
        filename_root=filename_root,
        period_seconds=period_seconds,
        output_region=output,
        input_regions=",".join(inputs),
        exclude_regions=",".join(excludes),
        include_travelers=include_travelers,
        only_non_travelers=only_non_travelers,
        max_records=max_records,
        signature_info_ids=_encode_ids(_newest_first(infos)),
        valid_from=valid_from,
        valid_until=valid_until,
        created_at=now,
        include_imported=include_imported,
        import_source_ids=imports[0],
        import_regions=imports[1],
    )
    return export_config_store.add_export_config(session, config)


def set_imports(
    session: Session,
    config: ExportConfig,
    *,
    include_imported: bool,
    import_source_ids: Sequence[int] = (),
    import_regions: Sequence[str] = (),
) -> None:
    """Change which imported keys the config re-exports, from its next window on.

    Files already written keep what they hold. Raises :class:`InvalidExportConfig` as
    :func:`create_export_config` does for the same options.
    """
    source_ids, regions = _imports(session, include_imported, import_source_ids, import_regions)
    config.include_imported = include_imported
    config.import_source_ids = source_ids
    config.import_regions = regions
    session.flush()


def _imports(
    session: Session,
    include_imported: bool,
    source_ids: Sequence[int],
    regions: Sequence[str],
) -> tuple[str, str]:
    """The stored forms of the import options, checked."""
    unique_ids = sorted(set(source_ids))
    normalized = _regions(regions, "import regions")
    if not include_imported:
        if unique_ids or normalized:
            raise InvalidExportConfig("import sources and regions need include_imported")
        return "", ""
    missing = set(unique_ids) - set(export_config_store.import_source_ids(session, unique_ids))
    if missing:
        raise InvalidExportConfig(
            f"no import source with id {', '.join(str(i) for i in sorted(missing))}"
        )
    encoded = ",".join(str(source_id) for source_id in unique_ids)
    if len(encoded) > _SIGNATURE_IDS_TEXT:
        raise InvalidExportConfig("too many import sources")
    return encoded, ",".join(normalized)


def _load_signature_infos(session: Session, ids: Sequence[int]) -> list[SignatureInfo]:
    unique = list(dict.fromkeys(ids))
    if not unique:
        return []
    found = export_config_store.signature_infos_by_id(session, unique)
    missing = [str(info_id) for info_id in unique if info_id not in found]
    if missing:
        raise UnknownSignatureInfo(f"no signature info with id {', '.join(missing)}")
    return [found[info_id] for info_id in unique]


def _key_store_name(key_id: str, key_version: str) -> str:
    # Key store names are lower-case letters, digits and hyphens; the random suffix keeps
    # "A_b" and "a-b" (which map to the same text) from colliding.
    readable = f"export-{key_id}-{key_version}".lower().replace("_", "-")[:80]
    return f"{readable}-{secrets.token_hex(6)}"


def add_signature_info(
    session: Session,
    key_store: KeyStore,
    *,
    key_id: str,
    key_version: str,
    now: datetime,
    valid_until: datetime | None = None,
) -> SignatureInfo:
    """Create a P-256 signing key in ``key_store`` and record it as ``key_id``/``key_version``.

    The public key PEM is stored so operators can register it with Apple and Google (and
    tests can verify files). Raises :class:`InvalidExportConfig` for names outside
    ``[A-Za-z0-9_]`` or :class:`DuplicateSignatureInfo` when the pair exists (a version must
    keep naming one key, or phones would verify against the wrong one).
    """
    require_aware(now, "now")
    for value, name in ((key_id, "key id"), (key_version, "key version")):
        if not KEY_NAME_PATTERN.fullmatch(value):
            raise InvalidExportConfig(f"{name} must be 1 to 100 letters, digits or '_'")
    if valid_until is not None:
        require_aware(valid_until, "valid_until")
        if valid_until <= now:
            raise InvalidExportConfig("valid_until must be in the future")
    if export_config_store.has_signature_info(session, key_id, key_version):
        raise DuplicateSignatureInfo(f"signature info {key_id}/{key_version} already exists")
    # The key is created before the row: a failed flush leaves an unused key file behind,
    # never a row whose key does not exist.
    reference = key_store.create(session, _key_store_name(key_id, key_version), now=now)
    public_pem = key_store.signer(session, reference).public_key_pem().decode("ascii")
    info = SignatureInfo(
        signing_key=reference,
        key_id=key_id,
        key_version=key_version,
        algorithm=ECDSA_SHA256_OID,
        public_key_pem=public_pem,
        created_at=now,
        valid_until=valid_until,
    )
    return export_config_store.add_signature_info(session, info)


def rotate_signature_info(
    session: Session,
    key_store: KeyStore,
    *,
    key_id: str,
    new_key_version: str,
    old_valid_until: datetime,
    now: datetime,
) -> SignatureInfo:
    """Add version ``new_key_version`` of ``key_id`` and retire the current ones gracefully.

    Every config that lists a still-valid signature info of ``key_id`` gets the new one in
    front (newest first); the old ones keep signing until ``old_valid_until`` (an earlier
    end already set is kept), which should leave phones time to receive the new public key.
    Signature infos that have expired are dropped from those configs to make room.

    Raises :class:`UnknownSignatureInfo` when ``key_id`` has no valid version,
    :class:`InvalidExportConfig` when ``old_valid_until`` is in the past or a config would
    list more than :data:`MAX_SIGNATURE_INFOS`, or what :func:`add_signature_info` raises.
    """
    require_aware(now, "now")
    require_aware(old_valid_until, "old_valid_until")
    if old_valid_until < now:
        raise InvalidExportConfig("old_valid_until must not be in the past")
    current = current_signature_infos(session, key_id, now)
    new_info = add_signature_info(
        session, key_store, key_id=key_id, key_version=new_key_version, now=now
    )
    current_ids = {info.id for info in current}
    for config in export_config_store.export_configs(session):
        listed = config_signature_info_ids(config)
        if not current_ids.intersection(listed):
            continue
        infos = _load_signature_infos(session, listed)
        kept = [info for info in infos if info.valid_until is None or info.valid_until > now]
        encoded = _encode_ids([new_info, *_newest_first(kept)])
        export_config_store.set_signature_info_ids(session, config, encoded)
    for info in current:
        if info.valid_until is None or info.valid_until > old_valid_until:
            export_config_store.end_signature_info_validity(session, info, old_valid_until)
    return new_info


def attach_signature_info(session: Session, config: ExportConfig, info: SignatureInfo) -> None:
    """Sign the config's files with ``info`` too (kept in newest-first order).

    Raises :class:`InvalidExportConfig` if the config would list more than
    :data:`MAX_SIGNATURE_INFOS`.
    """
    listed = config_signature_info_ids(config)
    if info.id in listed:
        return
    infos = _load_signature_infos(session, listed)
    encoded = _encode_ids(_newest_first([*infos, info]))
    export_config_store.set_signature_info_ids(session, config, encoded)


def valid_signature_infos(
    session: Session, config: ExportConfig, now: datetime
) -> list[SignatureInfo]:
    """The config's signature infos that may sign at ``now``, in signing order (at most 10)."""
    require_aware(now, "now")
    listed = config_signature_info_ids(config)
    if not listed:
        return []
    rows = export_config_store.signature_infos_by_id(session, listed)
    listed_rows = [rows[info_id] for info_id in listed if info_id in rows]
    valid = [info for info in listed_rows if info.valid_until is None or info.valid_until > now]
    return valid[:MAX_SIGNATURE_INFOS]


def current_signature_infos(session: Session, key_id: str, now: datetime) -> list[SignatureInfo]:
    """The versions of export key ``key_id`` that may sign at ``now``, newest first.

    Raises :class:`UnknownSignatureInfo` when there is none.
    """
    require_aware(now, "now")
    infos = export_config_store.valid_signature_infos_of_key(session, key_id, now)
    if not infos:
        raise UnknownSignatureInfo(f"no valid signature info with key id {key_id!r}")
    return _newest_first(infos)
