"""Tables of the key server. Nothing here names, locates or identifies a person or a phone.

An exposure row is one uploaded Temporary Exposure Key and what GAEN needs to score it;
which app or phone sent it is not kept (unlike the reference, which stores the app id), and
``created_at`` is truncated to the hour so upload times cannot be linked. Every table is
listed in docs/privacy.md with why it exists and how long rows live.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from exposure.db.base import Base, UTCDateTime


class HealthAuthority(Base):
    """An issuer of verification certificates that this key server trusts."""

    __tablename__ = "keyserver_health_authorities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The certificates' ``iss``.
    issuer: Mapped[str] = mapped_column(String(255), unique=True)
    #: The ``aud`` its certificates must carry, exactly.
    audience: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    #: Where the JWKS refresh job reads its keys (a bare JSON array of JWKs); None: set by CLI.
    jwks_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class HealthAuthorityKey(Base):
    """A public key of a health authority; ``version`` is the certificates' ``kid``."""

    __tablename__ = "keyserver_health_authority_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    health_authority_id: Mapped[int] = mapped_column(
        ForeignKey("keyserver_health_authorities.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(255))
    #: PKIX ``PUBLIC KEY`` PEM of a P-256 key.
    public_key_pem: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Set when the key is revoked (or vanished from the JWKS); None: valid until further notice.
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (UniqueConstraint("health_authority_id", "version"),)


class AuthorizedApp(Base):
    """A GAEN app allowed to publish: the ``healthAuthorityID`` it sends, lower-cased."""

    __tablename__ = "keyserver_authorized_apps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[str] = mapped_column(String(255), unique=True)
    #: Upper-case region codes joined by commas; keys from this app are tagged with them.
    regions: Mapped[str] = mapped_column(String(500), default="")
    #: Testing only: publish without a valid certificate (keys then carry no report type).
    bypass_verification: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (CheckConstraint("app_id = lower(app_id)", name="app_id_lower_case"),)


class AuthorizedAppHealthAuthority(Base):
    """Which health authorities' certificates an app may publish with."""

    __tablename__ = "keyserver_authorized_app_health_authorities"

    app_id: Mapped[int] = mapped_column(
        ForeignKey("keyserver_authorized_apps.id", ondelete="CASCADE"), primary_key=True
    )
    health_authority_id: Mapped[int] = mapped_column(
        ForeignKey("keyserver_health_authorities.id", ondelete="CASCADE"), primary_key=True
    )


class Exposure(Base):
    """One published (or imported, or padding) Temporary Exposure Key."""

    __tablename__ = "keyserver_exposures"

    key: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    transmission_risk: Mapped[int] = mapped_column(Integer)
    #: Upper-case region codes, each wrapped in commas (",VN,"), so one LIKE finds a region.
    regions: Mapped[str] = mapped_column(String(500))
    traveler: Mapped[bool] = mapped_column(Boolean, default=False)
    interval_number: Mapped[int] = mapped_column(Integer)
    interval_count: Mapped[int] = mapped_column(Integer)
    #: Truncated to the hour, or later for still-valid keys (the embargo); exports select by it.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: publish, padding or import: where the key came from (padding keys are never revised).
    origin: Mapped[str] = mapped_column(String(20), default="publish")
    health_authority_id: Mapped[int | None] = mapped_column(
        ForeignKey("keyserver_health_authorities.id", ondelete="SET NULL"), nullable=True
    )
    #: confirmed, likely, negative, user-report, or "" when published without a certificate.
    report_type: Mapped[str] = mapped_column(String(20), default="")
    days_since_symptom_onset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revised_report_type: Mapped[str | None] = mapped_column(String(20), nullable=True)
    revised_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revised_days_since_symptom_onset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revised_transmission_risk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Provenance of an imported key: its source and the file it came in (ids, not foreign
    #: keys: import records are purged on their own deadline, the keys on theirs).
    import_source_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    import_file_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        CheckConstraint("interval_count BETWEEN 1 AND 144", name="interval_count"),
        CheckConstraint("transmission_risk BETWEEN 0 AND 8", name="transmission_risk"),
        Index("ix_keyserver_exposures_created_at", "created_at"),
        # Most keys are never revised and most come from no import source: their NULLs
        # stay out of these two indexes (every query on them compares with a value).
        Index(
            "ix_keyserver_exposures_revised_at",
            "revised_at",
            postgresql_where=text("revised_at IS NOT NULL"),
            sqlite_where=text("revised_at IS NOT NULL"),
        ),
        Index(
            "ix_keyserver_exposures_import_source_id",
            "import_source_id",
            postgresql_where=text("import_source_id IS NOT NULL"),
            sqlite_where=text("import_source_id IS NOT NULL"),
        ),
    )


class RevisionKey(Base):
    """An AES-256 key that seals revision tokens; ``id`` is the token's ``kid``.

    The key itself is stored sealed under the server's revision secret, never in the clear;
    a destroyed key keeps its row (so ids are never reused) without the sealed bytes.
    """

    __tablename__ = "keyserver_revision_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealed_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: False once destroyed: tokens sealed under it no longer open.
    allowed: Mapped[bool] = mapped_column(Boolean, default=True)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SignatureInfo(Base):
    """A key that signs export files, and how phones name it (GAEN ``SignatureInfo``)."""

    __tablename__ = "keyserver_signature_infos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The key store's reference to the private key (a file name; a KMS id elsewhere).
    signing_key: Mapped[str] = mapped_column(String(255))
    #: ``verification_key_id``: the alias phones know the public key by (Apple: the MCC).
    key_id: Mapped[str] = mapped_column(String(100))
    #: ``verification_key_version``: the rollover version, e.g. ``v1``.
    key_version: Mapped[str] = mapped_column(String(100))
    algorithm: Mapped[str] = mapped_column(String(50), default="1.2.840.10045.4.3.2")
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: After this no file is signed with it; None: until further notice.
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (UniqueConstraint("key_id", "key_version"),)


class ExportConfig(Base):
    """One series of export files: which keys, how often, under which name, signed by whom."""

    __tablename__ = "keyserver_export_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Files are ``<filename_root>/<start>-<end>-<NNNNN>.zip`` beside ``<filename_root>/index.txt``.
    filename_root: Mapped[str] = mapped_column(String(200), unique=True)
    period_seconds: Mapped[int] = mapped_column(Integer)
    output_region: Mapped[str] = mapped_column(String(20))
    #: Comma-separated upper-case regions whose keys go in; empty means the output region.
    input_regions: Mapped[str] = mapped_column(String(500), default="")
    exclude_regions: Mapped[str] = mapped_column(String(500), default="")
    include_travelers: Mapped[bool] = mapped_column(Boolean, default=False)
    only_non_travelers: Mapped[bool] = mapped_column(Boolean, default=False)
    max_records: Mapped[int] = mapped_column(Integer, default=500_000)
    #: Comma-separated signature info ids, in the order their signatures are listed.
    signature_info_ids: Mapped[str] = mapped_column(String(200), default="")
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Whether keys imported from peers go in too (re-export), besides this server's own.
    include_imported: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Comma-separated import source ids whose keys go in; empty means every source.
    import_source_ids: Mapped[str] = mapped_column(String(200), default="")
    #: Comma-separated regions of imported keys that go in; empty means the input regions.
    import_regions: Mapped[str] = mapped_column(String(500), default="")

    __table_args__ = (
        # That the period divides a day is checked when a config is created (portable SQL
        # has no modulo operator that both engines agree on).
        CheckConstraint("period_seconds BETWEEN 1 AND 86400", name="period"),
        CheckConstraint("max_records >= 1", name="max_records"),
    )


#: An export batch's status: open (to be written) → pending (leased by a worker) → complete.
STATUS_OPEN = "open"
STATUS_PENDING = "pending"
STATUS_COMPLETE = "complete"


class ExportBatch(Base):
    """The window ``[start_at, end_at)`` of one config, to be written as one or more files."""

    __tablename__ = "keyserver_export_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_id: Mapped[int] = mapped_column(
        ForeignKey("keyserver_export_configs.id", ondelete="CASCADE"), index=True
    )
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: open → pending (leased by a worker) → complete; deleted once its files are purged.
    status: Mapped[str] = mapped_column(String(20), default="open")
    lease_holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("config_id", "start_at"),
        CheckConstraint("end_at > start_at", name="window"),
        Index("ix_keyserver_export_batches_status_end_at", "status", "end_at"),
    )


class ExportFile(Base):
    """One written file of a batch; ``filename`` is its object name under the blob store."""

    __tablename__ = "keyserver_export_files"

    filename: Mapped[str] = mapped_column(String(300), primary_key=True)
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("keyserver_export_batches.id", ondelete="CASCADE"), index=True
    )
    batch_num: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    key_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="complete")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ImportSource(Base):
    """A peer whose signed export files are imported: its index, where files are, who signs."""

    __tablename__ = "keyserver_import_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: A label for operators and metrics (lower-case letters, digits, hyphens).
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: The peer's index.txt: an http(s) URL, or a file path (an offline hand-over on a disk).
    index_location: Mapped[str] = mapped_column(String(1000))
    #: What the index's lines are relative to: a URL prefix, or a directory.
    export_root: Mapped[str] = mapped_column(String(1000))
    #: Applied to keys of files that name no region.
    region: Mapped[str] = mapped_column(String(20))
    #: Applied to keys whose file names no report type (confirmed, likely, user-report).
    report_type: Mapped[str] = mapped_column(String(20))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    #: No file is imported after this (set by ``disable``); None: until further notice.
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The index's validators, for conditional requests; kept only once every file it
    #: listed was handled.
    index_etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    index_last_modified: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The stable code of the last run's failure (fetch or index), or None.
    last_error: Mapped[str | None] = mapped_column(String(50), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ImportSourceKey(Base):
    """A public key that may sign a source's files (several, for the peer's rotation)."""

    __tablename__ = "keyserver_import_source_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(
        ForeignKey("keyserver_import_sources.id", ondelete="CASCADE"), index=True
    )
    #: ``verification_key_id`` and ``verification_key_version`` of the peer's files.
    key_id: Mapped[str] = mapped_column(String(100))
    key_version: Mapped[str] = mapped_column(String(100))
    #: PKIX ``PUBLIC KEY`` PEM of a P-256 key.
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("source_id", "key_id", "key_version"),)


#: An import record's status: every key of the file stored, or none (``reason`` says why).
IMPORT_IMPORTED = "imported"
IMPORT_REFUSED = "refused"


class ImportFile(Base):
    """One file of a source that was handled: imported whole, or refused whole."""

    __tablename__ = "keyserver_import_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(
        ForeignKey("keyserver_import_sources.id", ondelete="CASCADE")
    )
    #: The name as the index lists it.
    filename: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(20))
    #: Why a file was refused (a stable code), or None.
    reason: Mapped[str | None] = mapped_column(String(50), nullable=True)
    keys_inserted: Mapped[int] = mapped_column(Integer, default=0)
    keys_revised: Mapped[int] = mapped_column(Integer, default=0)
    #: Keys already stored (ours, another source's, or this source's own again).
    keys_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    #: Keys outside the accepted window (too old, in the future) or relayed (recursive).
    keys_dropped: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("source_id", "filename"),
        Index("ix_keyserver_import_files_created_at", "created_at"),
    )


class Mirror(Base):
    """A peer whose index and files are copied as they are into the blob store, for a CDN
    to serve under the peer's URL while its phones move to this service."""

    __tablename__ = "keyserver_mirrors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: The peer's index.txt (http(s) URL or a file path) and what its lines are relative to.
    index_location: Mapped[str] = mapped_column(String(1000))
    export_root: Mapped[str] = mapped_column(String(1000))
    #: Where the copies go in the blob store: ``<root>/<index path>``, ``<root>/<line>``.
    mirror_root: Mapped[str] = mapped_column(String(100), unique=True)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    index_etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    index_last_modified: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(50), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
