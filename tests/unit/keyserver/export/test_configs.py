"""Export configs and signature infos: validation, newest-first order, rotation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from crypto.signing import ECDSA_SHA256_OID, FileSigner, load_public_key
from exposure.keys import ServiceKeyStore
from keyserver.export import configs
from keyserver.export.configs import (
    DuplicateFilenameRoot,
    DuplicateSignatureInfo,
    InvalidExportConfig,
    UnknownSignatureInfo,
)
from keyserver.importer.sources import SourceKey, add_import_source
from keyserver.models import ExportConfig
from tests.keys import sealed_key_store
from tests.unit.keyserver.export.support import T0

DAY_SECONDS = 86_400


@pytest.fixture
def key_store() -> ServiceKeyStore:
    return sealed_key_store("keyserver")


def _create(session: Session, **overrides: Any) -> ExportConfig:
    arguments: dict[str, Any] = {
        "filename_root": "vn",
        "period": timedelta(hours=4),
        "output_region": "VN",
        "valid_from": T0,
        "now": T0,
    }
    arguments.update(overrides)
    return configs.create_export_config(session, **arguments)


# ---- periods ------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=DAY_SECONDS))
def test_period_is_accepted_exactly_when_it_divides_a_day(seconds: int) -> None:
    period = timedelta(seconds=seconds)
    if DAY_SECONDS % seconds == 0:
        assert configs._period_seconds(period) == seconds
    else:
        with pytest.raises(InvalidExportConfig, match="divide 24 hours"):
            configs._period_seconds(period)


@pytest.mark.parametrize(
    "period",
    [timedelta(0), timedelta(seconds=-60), timedelta(days=2), timedelta(milliseconds=1500)],
)
def test_periods_outside_whole_seconds_up_to_a_day_are_refused(period: timedelta) -> None:
    with pytest.raises(InvalidExportConfig):
        configs._period_seconds(period)


# ---- configs ------------------------------------------------------------------------------


def test_config_stores_normalized_values(db_session: Session, key_store: ServiceKeyStore) -> None:
    info = configs.add_signature_info(db_session, key_store, key_id="452", key_version="v1", now=T0)
    config = configs.create_export_config(
        db_session,
        filename_root="exports_v1.vn-2",
        period=timedelta(minutes=15),
        output_region=" vn ",
        input_regions=["vn", "la", "VN"],
        exclude_regions=["kh"],
        include_travelers=True,
        max_records=1_000,
        signature_info_ids=[info.id],
        valid_from=T0,
        now=T0,
    )
    assert config.period_seconds == 900
    assert config.output_region == "VN"
    assert config.input_regions == "LA,VN"
    assert config.exclude_regions == "KH"
    assert configs.config_input_regions(config) == ("LA", "VN")
    assert configs.config_signature_info_ids(config) == [info.id]
    assert configs.find_export_config(db_session, "EXPORTS_V1.VN-2") is config


def test_empty_input_regions_mean_the_output_region(db_session: Session) -> None:
    config = _create(db_session)
    assert configs.config_input_regions(config) == ("VN",)


@pytest.mark.parametrize(
    "root", ["", ".", "..", ".hidden", "a/b", "a b", "ä", "x" * 101, "a\\b", "a%2f"]
)
def test_unsafe_filename_roots_are_refused(db_session: Session, root: str) -> None:
    with pytest.raises(InvalidExportConfig, match="filename root"):
        _create(db_session, filename_root=root)


def test_filename_roots_are_unique_case_insensitively(db_session: Session) -> None:
    _create(db_session, filename_root="VN")
    with pytest.raises(DuplicateFilenameRoot) as raised:
        _create(db_session, filename_root="vn")
    assert raised.value.code == "duplicate_filename_root"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output_region": ""}, "output region is required"),
        ({"output_region": "V,N"}, "letters, digits or hyphens"),
        ({"input_regions": ["V%"]}, "letters, digits or hyphens"),
        ({"exclude_regions": ["a_b"]}, "letters, digits or hyphens"),
        ({"exclude_regions": ["vn"]}, "both included and excluded"),
        ({"include_travelers": True, "only_non_travelers": True}, "contradict"),
        ({"max_records": 0}, "max records"),
        ({"max_records": 750_001}, "max records"),
        ({"valid_until": T0}, "valid_until must be after valid_from"),
        ({"period": timedelta(hours=5)}, "divide 24 hours"),
    ],
)
def test_invalid_configs_are_refused(
    db_session: Session, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidExportConfig, match=message) as raised:
        _create(db_session, **overrides)
    assert raised.value.code == "invalid_export_config"


def test_unknown_signature_info_is_refused(db_session: Session) -> None:
    with pytest.raises(UnknownSignatureInfo, match="12345"):
        _create(db_session, signature_info_ids=[12345])


def test_signature_infos_are_listed_newest_first(
    db_session: Session, key_store: ServiceKeyStore
) -> None:
    infos = [
        configs.add_signature_info(
            db_session, key_store, key_id="452", key_version=f"v{n}", now=T0 + timedelta(days=n)
        )
        for n in range(3)
    ]
    config = _create(db_session, signature_info_ids=[infos[0].id, infos[2].id, infos[1].id])
    assert configs.config_signature_info_ids(config) == [
        infos[2].id,
        infos[1].id,
        infos[0].id,
    ]


def test_at_most_ten_signature_infos(db_session: Session, key_store: ServiceKeyStore) -> None:
    infos = [
        configs.add_signature_info(db_session, key_store, key_id="k", key_version=f"v{n}", now=T0)
        for n in range(11)
    ]
    with pytest.raises(InvalidExportConfig, match="at most 10"):
        _create(db_session, signature_info_ids=[info.id for info in infos])
    config = _create(db_session, signature_info_ids=[info.id for info in infos[:10]])
    with pytest.raises(InvalidExportConfig, match="at most 10"):
        configs.attach_signature_info(db_session, config, infos[10])


# ---- signature infos ------------------------------------------------------------------------


def test_signature_info_key_is_created_and_its_public_key_stored(
    db_session: Session, key_store: ServiceKeyStore
) -> None:
    info = configs.add_signature_info(db_session, key_store, key_id="310", key_version="v1", now=T0)
    assert info.algorithm == ECDSA_SHA256_OID
    signer = key_store.signer(db_session, info.signing_key)
    assert signer.public_key_pem().decode() == info.public_key_pem
    load_public_key(info.public_key_pem.encode())  # a P-256 public key


@pytest.mark.parametrize(
    ("key_id", "key_version"), [("", "v1"), ("310", ""), ("3-10", "v1"), ("310", "v.1")]
)
def test_signature_info_names_are_limited_to_word_characters(
    db_session: Session, key_store: ServiceKeyStore, key_id: str, key_version: str
) -> None:
    with pytest.raises(InvalidExportConfig):
        configs.add_signature_info(
            db_session, key_store, key_id=key_id, key_version=key_version, now=T0
        )


def test_signature_info_versions_are_never_reused(
    db_session: Session, key_store: ServiceKeyStore
) -> None:
    configs.add_signature_info(db_session, key_store, key_id="A_b", key_version="v1", now=T0)
    with pytest.raises(DuplicateSignatureInfo):
        configs.add_signature_info(db_session, key_store, key_id="A_b", key_version="v1", now=T0)
    # Names that map to the same key file name still get distinct files.
    other = configs.add_signature_info(
        db_session, key_store, key_id="a_B", key_version="v1", now=T0
    )
    assert other.signing_key.startswith("export-a-b-v1-")


def test_rotation_puts_the_new_key_first_and_retires_the_old_one_later(
    db_session: Session, key_store: ServiceKeyStore
) -> None:
    old = configs.add_signature_info(db_session, key_store, key_id="452", key_version="v1", now=T0)
    other = configs.add_signature_info(
        db_session, key_store, key_id="999", key_version="v1", now=T0
    )
    uses_old = _create(db_session, filename_root="a", signature_info_ids=[old.id])
    unrelated = _create(db_session, filename_root="b", signature_info_ids=[other.id])
    now = T0 + timedelta(days=30)
    switch = now + timedelta(days=7)

    new = configs.rotate_signature_info(
        db_session,
        key_store,
        key_id="452",
        new_key_version="v2",
        old_valid_until=switch,
        now=now,
    )

    assert configs.config_signature_info_ids(uses_old) == [new.id, old.id]
    assert configs.config_signature_info_ids(unrelated) == [other.id]
    assert old.valid_until == switch
    assert configs.valid_signature_infos(db_session, uses_old, now) == [new, old]
    assert configs.valid_signature_infos(db_session, uses_old, switch) == [new]
    # The next rotation drops the expired version from the config.
    newest = configs.rotate_signature_info(
        db_session,
        key_store,
        key_id="452",
        new_key_version="v3",
        old_valid_until=switch + timedelta(days=1),
        now=switch,
    )
    assert configs.config_signature_info_ids(uses_old) == [newest.id, new.id]


def test_rotation_needs_a_valid_key_and_a_future_cutover(
    db_session: Session, key_store: ServiceKeyStore
) -> None:
    with pytest.raises(UnknownSignatureInfo):
        configs.rotate_signature_info(
            db_session, key_store, key_id="452", new_key_version="v2", old_valid_until=T0, now=T0
        )
    configs.add_signature_info(db_session, key_store, key_id="452", key_version="v1", now=T0)
    with pytest.raises(InvalidExportConfig, match="past"):
        configs.rotate_signature_info(
            db_session,
            key_store,
            key_id="452",
            new_key_version="v2",
            old_valid_until=T0 - timedelta(seconds=1),
            now=T0,
        )


def test_current_signature_infos_of_a_key_id_newest_first(
    db_session: Session, key_store: ServiceKeyStore
) -> None:
    v1 = configs.add_signature_info(db_session, key_store, key_id="452", key_version="v1", now=T0)
    v2 = configs.add_signature_info(
        db_session, key_store, key_id="452", key_version="v2", now=T0 + timedelta(days=1)
    )
    configs.add_signature_info(db_session, key_store, key_id="999", key_version="v1", now=T0)
    later = T0 + timedelta(days=2)
    assert configs.current_signature_infos(db_session, "452", later) == [v2, v1]
    v1.valid_until = later
    assert configs.current_signature_infos(db_session, "452", later) == [v2]
    with pytest.raises(UnknownSignatureInfo):
        configs.current_signature_infos(db_session, "310", later)


def test_expired_signature_infos_do_not_sign(
    db_session: Session, key_store: ServiceKeyStore
) -> None:
    expiring = configs.add_signature_info(
        db_session,
        key_store,
        key_id="452",
        key_version="v1",
        now=T0,
        valid_until=T0 + timedelta(days=1),
    )
    config = _create(db_session, signature_info_ids=[expiring.id])
    assert configs.valid_signature_infos(db_session, config, T0) == [expiring]
    assert configs.valid_signature_infos(db_session, config, T0 + timedelta(days=1)) == []


# ---- re-exporting imported keys ------------------------------------------------------------


def _source(session: Session, name: str) -> int:

    pem = FileSigner.generate().public_key_pem().decode("ascii")
    source = add_import_source(
        session,
        name=name,
        index_location=f"https://{name}.example/v1/index.txt",
        export_root=f"https://{name}.example",
        keys=[SourceKey("1", "v1", pem)],
        region="VN",
        now=T0,
    )
    return source.id


def test_imported_keys_are_left_out_unless_asked_for(db_session: Session) -> None:
    config = _create(db_session)
    assert (config.include_imported, config.import_source_ids, config.import_regions) == (
        False,
        "",
        "",
    )
    first, second = _source(db_session, "first"), _source(db_session, "second")

    chosen = _create(
        db_session,
        filename_root="all",
        include_imported=True,
        import_source_ids=[second, first, second],
        import_regions=["de", "vn"],
    )

    assert configs.config_import_source_ids(chosen) == sorted([first, second])
    assert configs.config_import_regions(chosen) == ("DE", "VN")
    configs.set_imports(db_session, chosen, include_imported=False)
    assert (chosen.include_imported, chosen.import_source_ids, chosen.import_regions) == (
        False,
        "",
        "",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"import_regions": ["DE"]}, "need include_imported"),
        ({"include_imported": True, "import_source_ids": [999]}, "no import source with id 999"),
        ({"include_imported": True, "import_regions": ["D,E"]}, "import regions: region"),
    ],
)
def test_bad_import_options_are_refused(
    db_session: Session, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidExportConfig, match=message):
        _create(db_session, **overrides)
