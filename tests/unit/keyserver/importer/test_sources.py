"""Import sources: what an operator may record, and what disabling and purging do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.signing import FileSigner
from keyserver.importer.sources import (
    DuplicateImportSource,
    InvalidImportSource,
    SourceKey,
    UnknownImportSource,
    add_import_source,
    disable_import_source,
    find_import_source,
    import_source_facts,
    purge_import_source,
)
from keyserver.models import Exposure, ImportFile
from keyserver.store import imports as import_store
from tests.unit.keyserver.export.support import exposure_row

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
PEM = FileSigner.generate().public_key_pem().decode("ascii")
KEY = SourceKey("310", "v1", PEM)


def _add(session: Session, **overrides: object) -> object:
    arguments: dict[str, object] = {
        "name": "peer",
        "index_location": "https://peer.example/v1/index.txt",
        "export_root": "https://peer.example",
        "keys": [KEY],
        "region": "vn",
        "now": NOW,
    }
    arguments.update(overrides)
    return add_import_source(session, **arguments)  # type: ignore[arg-type]


def test_a_source_is_recorded_with_its_keys(db_session: Session) -> None:
    rotated = SourceKey("310", "v2", FileSigner.generate().public_key_pem().decode("ascii"))
    source = _add(db_session, keys=[KEY, rotated], report_type="likely")

    found = find_import_source(db_session, "peer")
    assert found is source
    assert find_import_source(db_session, str(found.id)) is source
    facts = import_source_facts(db_session, found)
    assert facts["region"] == "VN"
    assert facts["report_type"] == "likely"
    assert facts["keys"] == [
        {"key_id": "310", "key_version": "v1"},
        {"key_id": "310", "key_version": "v2"},
    ]
    assert (facts["files_imported"], facts["files_refused"], facts["keys_stored"]) == (0, {}, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Peer One"}, "name must be"),
        ({"index_location": "ftp://peer.example/index.txt"}, "URL or a local path"),
        ({"index_location": "relative/index.txt", "export_root": "relative"}, "absolute path"),
        ({"export_root": "/srv/peer"}, "both be URLs or both be paths"),
        ({"region": "V,N"}, "region must be"),
        ({"report_type": "negative"}, "report type must be one of"),
        ({"keys": []}, "at least one public key"),
        ({"keys": [SourceKey("310", "v1", "not a pem")]}, "not a P-256 public key"),
        ({"keys": [SourceKey("3 10", "v1", PEM)]}, "key id must be"),
        ({"keys": [KEY, KEY]}, "given once"),
        ({"valid_until": NOW - timedelta(days=1)}, "until must be after from"),
    ],
)
def test_bad_sources_are_refused_with_a_reason(
    db_session: Session, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidImportSource, match=message):
        _add(db_session, **overrides)
    assert import_store.import_sources(db_session) == []


def test_names_are_unique_and_unknown_names_are_refused(db_session: Session) -> None:
    _add(db_session)
    with pytest.raises(DuplicateImportSource):
        _add(db_session)
    with pytest.raises(UnknownImportSource):
        find_import_source(db_session, "nobody")


def test_a_disabled_source_is_no_longer_active(db_session: Session) -> None:
    source = _add(db_session)
    assert import_store.active_import_sources(db_session, NOW) == [source]

    assert disable_import_source(source, NOW + timedelta(hours=1)) is True
    assert disable_import_source(source, NOW + timedelta(hours=2)) is False
    assert import_store.active_import_sources(db_session, NOW + timedelta(hours=2)) == []


def test_purging_a_source_deletes_its_keys_and_records_and_nothing_else(
    db_session: Session,
) -> None:
    source = _add(db_session)
    other = _add(db_session, name="other")
    theirs = Exposure(**exposure_row(created_at=NOW, origin="import"))
    theirs.import_source_id = source.id
    elsewhere = Exposure(**exposure_row(created_at=NOW, origin="import"))
    elsewhere.import_source_id = other.id
    own = Exposure(**exposure_row(created_at=NOW))
    db_session.add_all([theirs, elsewhere, own])
    db_session.add(
        ImportFile(
            source_id=source.id,
            filename="v1/a.zip",
            status="imported",
            keys_inserted=1,
            keys_revised=0,
            keys_duplicate=0,
            keys_dropped=0,
            created_at=NOW,
        )
    )
    db_session.flush()

    purged = purge_import_source(db_session, source, NOW)

    assert (purged.keys, purged.records) == (1, 1)
    remaining = set(db_session.scalars(select(Exposure.key)))
    assert remaining == {elsewhere.key, own.key}
    assert source.valid_until == NOW
