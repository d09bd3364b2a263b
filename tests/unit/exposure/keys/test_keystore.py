"""Keys sealed in the service's database: they sign, they open only under their own KEK and
name, they re-seal under a new KEK, and the first of each is made once however many
processes start together."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from crypto.audit import verify_ed25519
from crypto.signing import load_public_key, verify_signature
from exposure.db import make_session_factory, unit_of_work
from exposure.keys import KeyNotFound, KeysDoNotOpen, ServiceKeyStore
from exposure.keys.keystore import LOG_PURPOSE
from exposure.keys.models import SealedKey

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEK_A = bytes(range(32))
KEK_B = bytes(range(32, 64))


def store(*keks: bytes, service: str = "keyserver") -> ServiceKeyStore:
    return ServiceKeyStore(service, list(keks), kek_source="EXPOSURE_KEYSERVER_KEK")


def test_a_created_key_signs_and_its_public_half_verifies(db_session: Session) -> None:
    keys = store(KEK_A)
    reference = keys.create(db_session, "export-452-v1", now=NOW)
    signer = keys.signer(db_session, reference)

    signature = signer.sign(b"export.bin")

    verify_signature(load_public_key(signer.public_key_pem()), b"export.bin", signature)


def test_another_process_with_the_same_kek_signs_with_the_same_key(db_session: Session) -> None:
    reference = store(KEK_A).create(db_session, "token-t1", now=NOW)

    elsewhere = store(KEK_A).signer(db_session, reference)

    assert elsewhere.public_key_pem() == store(KEK_A).signer(db_session, reference).public_key_pem()


def test_the_private_key_is_not_in_the_database_in_the_clear(db_session: Session) -> None:
    keys = store(KEK_A)
    reference = keys.create(db_session, "token-t1", now=NOW)
    row = db_session.scalars(select(SealedKey).where(SealedKey.name == reference)).one()

    assert b"PRIVATE KEY" not in row.sealed
    assert row.kek_id == keys.current_kek_id
    assert len(row.kek_id) == 8


def test_a_wrong_kek_refuses_naming_the_setting_and_the_kek_ids(db_session: Session) -> None:
    reference = store(KEK_A).create(db_session, "token-t1", now=NOW)
    wrong = store(KEK_B)

    with pytest.raises(KeysDoNotOpen) as refused:
        wrong.check(db_session)
    with pytest.raises(KeysDoNotOpen):
        wrong.signer(db_session, reference)

    assert "EXPOSURE_KEYSERVER_KEK" in refused.value.message
    assert store(KEK_A).current_kek_id in refused.value.message
    assert wrong.unknown_kek_ids(db_session) == {store(KEK_A).current_kek_id}


def test_a_sealed_value_moved_to_another_row_does_not_open(db_session: Session) -> None:
    keys = store(KEK_A)
    keys.create(db_session, "first", now=NOW)
    keys.create(db_session, "second", now=NOW)
    first = db_session.scalars(select(SealedKey).where(SealedKey.name == "first")).one()
    db_session.execute(
        update(SealedKey).where(SealedKey.name == "second").values(sealed=first.sealed)
    )
    db_session.expire_all()

    with pytest.raises(KeysDoNotOpen, match="damaged or copied"):
        store(KEK_A).signer(db_session, "second")


def test_another_services_keys_are_not_this_services(db_session: Session) -> None:
    store(KEK_A, service="verification").create(db_session, "shared-name", now=NOW)

    with pytest.raises(KeyNotFound):
        store(KEK_A).signer(db_session, "shared-name")
    assert store(KEK_A).check(db_session) == 0


def test_a_destroyed_key_is_gone(db_session: Session) -> None:
    keys = store(KEK_A)
    reference = keys.create(db_session, "retired", now=NOW)

    assert keys.destroy(db_session, reference) is True
    assert keys.destroy(db_session, reference) is False
    assert not keys.holds(db_session, reference)
    with pytest.raises(KeyNotFound):
        keys.signer(db_session, reference)


def test_rotating_the_kek_rewraps_every_key_under_the_new_one(db_session: Session) -> None:
    old = store(KEK_A)
    reference = old.create(db_session, "export", now=NOW)
    secret = old.secrets(db_session, "hmac", now=NOW)
    public = old.signer(db_session, reference).public_key_pem()
    rotating = store(KEK_B, KEK_A)

    assert rotating.rewrap(db_session) == 2
    assert rotating.rewrap(db_session) == 0

    new_only = store(KEK_B)
    assert new_only.check(db_session) == 2
    assert new_only.signer(db_session, reference).public_key_pem() == public
    assert new_only.secrets(db_session, "hmac", now=NOW) == secret
    with pytest.raises(KeysDoNotOpen):
        store(KEK_A).check(db_session)


def test_secrets_are_made_once_and_rotate_newest_first(db_session: Session) -> None:
    keys = store(KEK_A)
    first = keys.secrets(db_session, "hmac", now=NOW)
    again = store(KEK_A).secrets(db_session, "hmac", now=NOW)
    keys.rotate_secret(db_session, "hmac", now=NOW)
    rotated = keys.secrets(db_session, "hmac", now=NOW)

    assert first == again
    assert len(first) == 1
    assert len(first[0]) == 32
    assert rotated[1:] == first
    assert rotated[0] != first[0]


def test_a_rotated_log_key_signs_and_the_old_one_is_kept(db_session: Session) -> None:
    keys = store(KEK_A)
    (old,) = keys.log_signers(db_session, now=NOW)
    new = keys.rotate_log_key(db_session, now=NOW)
    current, previous = keys.log_signers(db_session, now=NOW)

    assert (current.public_key, previous.public_key) == (new.public_key, old.public_key)
    verify_ed25519(current.public_key, b"head", current.sign(b"head"))
    listed = {info.name: info for info in keys.describe(db_session)}
    rows = [info for info in listed.values() if info.purpose == LOG_PURPOSE]
    assert sorted(info.retired_at is None for info in rows) == [False, True]
    assert all(info.public_key for info in rows)
    assert base64.b64encode(new.public_key).decode() in {info.public_key for info in rows}


def test_the_first_secret_is_made_once_when_processes_race(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    results: list[list[bytes]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def first_start() -> None:
        try:
            barrier.wait()
            with unit_of_work(sessions) as session:
                made = store(KEK_A).secrets(session, "revision-token-aad", now=NOW)
            results.append(made)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=first_start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({tuple(result) for result in results}) == 1
    with unit_of_work(sessions) as session:
        assert len(store(KEK_A).secrets(session, "revision-token-aad", now=NOW)) == 1


def test_a_kek_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        store(bytes(31))
