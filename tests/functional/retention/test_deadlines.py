"""With the clock moved forward, each kind of data disappears at its deadline and not before,
and each purge leaves a retention-log entry that verifies.

Every test seeds items born at ``T0``, purges one second before the deadline (everything
stays) and one second after (the kind is gone, everything else stays), on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select

from crypto.randomness import random_bytes
from exposure.db import unit_of_work
from exposure.db.lease import LeaseRow
from exposure.ratelimit import RateLimitWindow
from exposure.retention.log import export_document, verify_document
from exposure.retention.models import RetentionCheckpoint, RetentionLogEntry
from keyserver.export.blobstore import ZIP_CACHE_CONTROL, ZIP_CONTENT_TYPE
from keyserver.export.worker import INDEX_FILENAME
from keyserver.models import (
    ExportBatch,
    ExportConfig,
    ExportFile,
    Exposure,
    HealthAuthority,
    HealthAuthorityKey,
    ImportFile,
    ImportSource,
    RevisionKey,
)
from tests.functional.retention.conftest import T0, World
from verification.models import (
    ApiKey,
    AuditEntry,
    Realm,
    SigningKey,
    VerificationCode,
    VerificationToken,
)

SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)


def _count(world: World, model: type, *conditions: object) -> int:
    with world.sessions() as session:
        return int(
            session.scalar(select(func.count()).select_from(model).where(*conditions))  # type: ignore[arg-type]
            or 0
        )


def _add(world: World, *rows: object) -> None:
    with unit_of_work(world.sessions) as session:
        session.add_all(rows)


def _last_entry(world: World, service: str, kind: str) -> dict[str, object]:
    with world.sessions() as session:
        text = session.scalars(
            select(RetentionLogEntry.entry)
            .where(RetentionLogEntry.service == service, RetentionLogEntry.kind == kind)
            .order_by(RetentionLogEntry.seq.desc())
            .limit(1)
        ).one()
    entry: dict[str, object] = json.loads(text)
    return entry


def _log_verifies(world: World) -> None:
    for retention in (world.keyserver_retention, world.verification_retention):
        with unit_of_work(world.sessions) as session:
            document = export_document(
                session, service=retention.service.value, public_key=retention.public_key
            )
        report = verify_document(document, public_key=retention.public_key)
        assert report.ok, report.problem


def _exposure(origin: str, created_at: datetime, *, revised: bool = False) -> Exposure:
    return Exposure(
        key=random_bytes(16),
        transmission_risk=2,
        regions=",VN,",
        traveler=False,
        interval_number=int(created_at.timestamp()) // 600 - 144,
        interval_count=144,
        created_at=created_at,
        origin=origin,
        report_type="confirmed",
        revised_report_type="confirmed" if revised else None,
        revised_at=created_at + timedelta(hours=3) if revised else None,
    )


def _check_deadline(
    world: World,
    *,
    service: str,
    kind: str,
    deadline: timedelta,
    remaining: Callable[[], int],
    seeded: int,
) -> None:
    world.purge(T0 + deadline - SECOND)
    assert remaining() == seeded, f"{kind} went before its deadline"
    assert _last_entry(world, service, kind)["rows"] == 0

    world.purge(T0 + deadline + SECOND)
    assert remaining() == 0, f"{kind} outlived its deadline"
    entry = _last_entry(world, service, kind)
    assert entry["rows"] == seeded
    assert entry["outcome"] == "ok"
    assert entry["cutoff"] == (T0 + SECOND).isoformat()
    _log_verifies(world)


def test_keys_of_every_origin_go_at_fourteen_days(world: World) -> None:
    _add(
        world,
        _exposure("publish", T0),
        _exposure("publish", T0),
        _exposure("padding", T0),
        _exposure("import", T0),
        _exposure("publish", T0, revised=True),
    )
    fresh = _exposure("publish", T0 + 2 * DAY)
    _add(world, fresh)

    world.purge(T0 + 14 * DAY - SECOND)
    assert _count(world, Exposure) == 6

    world.purge(T0 + 14 * DAY + SECOND)
    with world.sessions() as session:
        assert list(session.scalars(select(Exposure.key))) == [fresh.key]
    for kind, rows in (
        ("exposure-keys", 2),
        ("padding-keys", 1),
        ("imported-keys", 1),
        ("revised-keys", 1),
    ):
        entry = _last_entry(world, "keyserver", kind)
        assert entry["rows"] == rows, kind
        assert entry["oldest_remaining_age_seconds"] == (
            (14 * DAY + SECOND - 2 * DAY).total_seconds() if kind == "exposure-keys" else None
        )
    _log_verifies(world)


def _export_config(world: World) -> ExportConfig:
    config = ExportConfig(
        filename_root="v1",
        period_seconds=86400,
        output_region="VN",
        valid_from=T0 - 30 * DAY,
        created_at=T0 - 30 * DAY,
    )
    _add(world, config)
    return config


def _export_batch(world: World, config: ExportConfig, start: datetime, name: str) -> None:
    with unit_of_work(world.sessions) as session:
        batch = ExportBatch(
            config_id=config.id,
            start_at=start,
            end_at=start + DAY,
            status="complete",
            completed_at=start + DAY,
        )
        session.add(batch)
        session.flush()
        session.add(
            ExportFile(
                filename=name,
                batch_id=batch.id,
                batch_num=1,
                batch_size=1,
                key_count=1000,
                status="complete",
                created_at=start + DAY,
            )
        )
    world.keyserver.export_store.put(
        name, b"zip bytes", content_type=ZIP_CONTENT_TYPE, cache_control=ZIP_CACHE_CONTROL
    )


def test_export_files_are_unlisted_then_deleted_at_their_deadline(world: World) -> None:
    config = _export_config(world)
    old, new = "v1/old.zip", "v1/new.zip"
    _export_batch(world, config, T0, old)
    _export_batch(world, config, T0 + 3 * DAY, new)
    store = world.keyserver.export_store

    world.purge(T0 + 14 * DAY - SECOND)
    assert store.get(old) is not None

    world.purge(T0 + 14 * DAY + SECOND)
    assert store.get(old) is None
    assert store.get(new) is not None
    index = store.get(f"v1/{INDEX_FILENAME}")
    assert index is not None
    assert index.data.decode() == new
    assert _count(world, ExportFile) == 1
    assert _count(world, ExportBatch) == 1
    entry = _last_entry(world, "keyserver", "export-files")
    assert (entry["rows"], entry["blobs"]) == (2, 1)
    _log_verifies(world)


def test_a_batch_being_written_is_left_for_the_next_run(world: World) -> None:
    config = _export_config(world)
    _add(
        world,
        ExportBatch(
            config_id=config.id,
            start_at=T0,
            end_at=T0 + DAY,
            status="pending",
            lease_holder="someone",
            lease_expires_at=T0 + 30 * DAY,
        ),
    )

    world.purge(T0 + 15 * DAY)

    assert _count(world, ExportBatch) == 1


def test_superseded_revision_keys_go_fifteen_days_after_the_takeover(world: World) -> None:
    _add(world, RevisionKey(sealed_key=None, created_at=T0 - 7 * DAY, allowed=True))
    _add(world, RevisionKey(sealed_key=b"x", created_at=T0, allowed=True))

    _check_deadline(
        world,
        service="keyserver",
        kind="revision-keys",
        deadline=15 * DAY,
        remaining=lambda: _count(world, RevisionKey, RevisionKey.created_at < T0),
        seeded=1,
    )
    assert _count(world, RevisionKey) == 1  # the current key is never deleted


def test_revoked_health_authority_keys_go_thirty_days_after_revocation(world: World) -> None:
    authority = HealthAuthority(issuer="iss", audience="aud", name="HA", created_at=T0 - DAY)
    _add(world, authority)
    _add(
        world,
        HealthAuthorityKey(
            health_authority_id=authority.id,
            version="v1",
            public_key_pem="pem",
            valid_from=T0 - DAY,
            valid_until=T0,
        ),
        HealthAuthorityKey(
            health_authority_id=authority.id,
            version="v2",
            public_key_pem="pem",
            valid_from=T0,
            valid_until=None,
        ),
    )

    _check_deadline(
        world,
        service="keyserver",
        kind="revoked-health-authority-keys",
        deadline=30 * DAY,
        remaining=lambda: _count(world, HealthAuthorityKey, HealthAuthorityKey.version == "v1"),
        seeded=1,
    )
    assert _count(world, HealthAuthority) == 1
    assert _count(world, HealthAuthorityKey) == 1


def _realm(world: World) -> Realm:
    realm = Realm(name="r", certificate_issuer="iss", created_at=T0 - DAY)
    _add(world, realm)
    return realm


def _code(realm: Realm, expires: datetime, *, issued_by: int | None = None) -> VerificationCode:
    return VerificationCode(
        realm_id=realm.id,
        uuid=os.urandom(8).hex(),
        code_hmac=random_bytes(64),
        long_code_hmac=random_bytes(64),
        test_type="confirmed",
        expires_at=expires - timedelta(hours=23),
        long_expires_at=expires,
        issued_by_api_key_id=issued_by,
        created_at=expires - DAY,
    )


def test_code_hashes_are_blanked_at_48_hours_and_rows_deleted_at_14_days(world: World) -> None:
    realm = _realm(world)
    _add(world, _code(realm, T0), _code(realm, T0 + 20 * DAY))

    def hashed() -> int:
        return _count(world, VerificationCode, VerificationCode.code_hmac.is_not(None))

    _check_deadline(
        world,
        service="verification",
        kind="verification-code-values",
        deadline=48 * timedelta(hours=1),
        remaining=lambda: hashed() - 1,
        seeded=1,
    )
    assert _count(world, VerificationCode, VerificationCode.long_code_hmac.is_not(None)) == 1
    _check_deadline(
        world,
        service="verification",
        kind="verification-codes",
        deadline=14 * DAY,
        remaining=lambda: _count(world, VerificationCode) - 1,
        seeded=1,
    )


def test_tokens_go_a_day_after_they_expire(world: World) -> None:
    realm = _realm(world)
    _add(
        world,
        VerificationToken(
            realm_id=realm.id, token_hmac=random_bytes(64), test_type="confirmed", expires_at=T0
        ),
    )

    _check_deadline(
        world,
        service="verification",
        kind="verification-tokens",
        deadline=DAY,
        remaining=lambda: _count(world, VerificationToken),
        seeded=1,
    )


def test_audit_entries_go_at_thirty_days(world: World) -> None:
    _add(world, AuditEntry(actor="cli", action="created realm", target="realm:1", created_at=T0))

    _check_deadline(
        world,
        service="verification",
        kind="audit-entries",
        deadline=30 * DAY,
        remaining=lambda: _count(world, AuditEntry),
        seeded=1,
    )


def test_retired_signing_keys_go_with_their_sealed_private_key(world: World) -> None:
    realm = _realm(world)
    keys = world.deployment.verification.keys
    with unit_of_work(world.sessions) as session:
        reference = keys.create(session, "retired-test-key", now=T0 - DAY)

    def key_held() -> bool:
        with unit_of_work(world.sessions) as session:
            return keys.holds(session, reference)

    _add(
        world,
        SigningKey(
            realm_id=realm.id,
            purpose="certificate",
            kid="k1",
            key_reference=reference,
            public_key_pem="pem",
            created_at=T0 - DAY,
            active_at=T0 - DAY,
            retired_at=T0,
        ),
    )
    assert key_held()

    _check_deadline(
        world,
        service="verification",
        kind="retired-signing-keys",
        deadline=36 * timedelta(hours=1),
        remaining=lambda: _count(world, SigningKey),
        seeded=1,
    )
    assert not key_held()
    assert _last_entry(world, "verification", "retired-signing-keys")["blobs"] == 1


def test_disabled_api_keys_go_at_fourteen_days_once_no_code_names_them(world: World) -> None:
    realm = _realm(world)

    def api_key(name: str) -> ApiKey:
        return ApiKey(
            realm_id=realm.id,
            kind="admin",
            name=name,
            key_hmac=random_bytes(64),
            preview="abcdef",
            created_at=T0 - DAY,
            disabled_at=T0,
        )

    free, named = api_key("free"), api_key("named")
    _add(world, free, named)
    _add(world, _code(realm, T0 + 20 * DAY, issued_by=named.id))

    _check_deadline(
        world,
        service="verification",
        kind="disabled-api-keys",
        deadline=14 * DAY,
        remaining=lambda: _count(world, ApiKey, ApiKey.name == "free"),
        seeded=1,
    )
    assert _count(world, ApiKey, ApiKey.name == "named") == 1


def test_leases_and_rate_limit_windows_go_at_their_deadlines(world: World) -> None:
    _add(world, LeaseRow(name="old", holder="h", expires_at=T0))
    _add(world, RateLimitWindow(bucket="b" * 64, window_start=T0, count=3))

    # One database serves both services here, so the keyserver's purge takes them first.
    _check_deadline(
        world,
        service="keyserver",
        kind="leases",
        deadline=DAY,
        remaining=lambda: _count(world, LeaseRow, LeaseRow.name == "old"),
        seeded=1,
    )
    _check_deadline(
        world,
        service="keyserver",
        kind="rate-limit-state",
        deadline=2 * DAY,
        remaining=lambda: _count(world, RateLimitWindow),
        seeded=1,
    )


def test_the_log_truncates_itself_behind_a_checkpoint_and_still_verifies(world: World) -> None:
    world.purge(T0)
    world.purge(T0 + DAY)
    first_run = _count(
        world,
        RetentionLogEntry,
        RetentionLogEntry.recorded_at == T0,
        RetentionLogEntry.service == "keyserver",
    )
    assert first_run > 0

    world.purge(T0 + 365 * DAY + SECOND)

    assert _count(world, RetentionLogEntry, RetentionLogEntry.recorded_at == T0) == 0
    assert _count(world, RetentionLogEntry, RetentionLogEntry.recorded_at == T0 + DAY) > 0
    entry = _last_entry(world, "keyserver", "retention-log")
    assert entry["rows"] == first_run
    with world.sessions() as session:
        anchors = session.scalars(select(RetentionCheckpoint.seq)).all()
    assert anchors
    _log_verifies(world)


def test_seeding_helpers_write_real_rows(world: World) -> None:
    # Guards the tests above against seeding nothing and "purging" nothing.
    _add(world, _exposure("publish", T0))
    assert _count(world, Exposure) == 1


def test_import_records_go_at_twenty_one_days_and_imported_keys_at_fourteen(world: World) -> None:
    source = ImportSource(
        name="peer",
        index_location="https://peer.example/v1/index.txt",
        export_root="https://peer.example",
        region="VN",
        report_type="confirmed",
        valid_from=T0 - DAY,
        created_at=T0 - DAY,
    )
    _add(world, source)
    records = [
        ImportFile(
            source_id=source.id,
            filename=f"v1/{number}.zip",
            status="imported" if number else "refused",
            reason=None if number else "unsigned",
            keys_inserted=1,
            keys_revised=0,
            keys_duplicate=0,
            keys_dropped=0,
            created_at=T0,
        )
        for number in range(3)
    ]
    _add(world, *records)
    imported = _exposure("import", T0)
    imported.import_source_id = source.id
    _add(world, imported)

    world.purge(T0 + 14 * DAY + SECOND)
    assert _count(world, Exposure) == 0
    assert _count(world, ImportFile) == 3  # kept longer than any key could be valid

    _check_deadline(
        world,
        service="keyserver",
        kind="import-records",
        deadline=21 * DAY,
        remaining=lambda: _count(world, ImportFile),
        seeded=3,
    )
    assert _count(world, ImportSource) == 1  # configuration stays
