"""The retention log: appended entries verify; any edit, deletion, reordering, truncation or
re-signing with another key is detected and located."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from crypto.audit import GENESIS, AuditSigner, chain_link
from exposure.retention.log import (
    CHECKPOINT_DOMAIN,
    DOCUMENT_FORMAT,
    ENTRY_DOMAIN,
    append_entry,
    canonical_json,
    export_document,
    truncate_before,
    verify_document,
    write_checkpoint,
)

T0 = datetime(2026, 6, 1, tzinfo=UTC)
SIGNER = AuditSigner.from_seed(bytes(range(32)))
OTHER = AuditSigner.from_seed(bytes(range(1, 33)))


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _append(
    session: Session, count: int, *, start: datetime = T0, service: str = "keyserver"
) -> None:
    for index in range(count):
        moment = start + timedelta(hours=index)
        append_entry(
            session,
            SIGNER,
            service=service,
            kind=("exposure-keys", "export-files", "leases")[index % 3],
            fields={"as_of": moment.isoformat(), "rows": index, "outcome": "ok"},
            recorded_at=moment,
        )


def _document(session: Session, service: str = "keyserver") -> dict[str, Any]:
    return export_document(session, service=service, public_key=SIGNER.public_key)


@pytest.fixture
def document(db_session: Session) -> dict[str, Any]:
    _append(db_session, 6)
    return _document(db_session)


def test_an_appended_log_verifies_and_counts_kinds(document: dict[str, Any]) -> None:
    report = verify_document(document, public_key=SIGNER.public_key)

    assert report.ok
    assert (report.first_seq, report.head_seq, report.entries_checked) == (1, 6, 6)
    assert report.kinds == {"exposure-keys": 2, "export-files": 2, "leases": 2}
    assert report.head == document["entries"][-1]["link"]


def test_entries_are_canonical_json_with_service_seq_and_kind(document: dict[str, Any]) -> None:
    first = document["entries"][0]["entry"]
    body = json.loads(first)

    assert first == canonical_json(body)
    assert (body["service"], body["seq"], body["kind"]) == ("keyserver", 1, "exposure-keys")


def test_links_follow_the_published_construction(document: dict[str, Any]) -> None:
    # Known answer: recompute the chain independently of the verifier.
    link = GENESIS
    for item in document["entries"]:
        link = chain_link(link, item["entry"].encode("ascii"))
        assert item["link"] == link.hex()


def _problem(document: dict[str, Any], key: bytes = SIGNER.public_key) -> tuple[int | None, str]:
    report = verify_document(document, public_key=key)
    assert not report.ok
    assert report.problem is not None
    return report.problem.seq, report.problem.reason


def test_editing_an_entry_is_detected_at_that_entry(document: dict[str, Any]) -> None:
    body = json.loads(document["entries"][3]["entry"])
    body["rows"] = 0
    document["entries"][3]["entry"] = canonical_json(body)

    assert _problem(document) == (4, "link")


def test_deleting_an_entry_is_detected(document: dict[str, Any]) -> None:
    del document["entries"][2]

    assert _problem(document) == (3, "sequence")


def test_deleting_an_entry_and_renumbering_is_detected(document: dict[str, Any]) -> None:
    del document["entries"][2]
    for item in document["entries"][2:]:
        item["seq"] -= 1

    assert _problem(document) == (3, "link")


def test_reordering_entries_is_detected(document: dict[str, Any]) -> None:
    entries = document["entries"]
    entries[1], entries[2] = entries[2], entries[1]
    entries[1]["seq"], entries[2]["seq"] = 2, 3

    assert _problem(document) == (2, "link")


def test_a_chain_rebuilt_and_signed_with_another_key_is_detected(
    document: dict[str, Any],
) -> None:
    link = GENESIS
    for item in document["entries"]:
        body = json.loads(item["entry"])
        body["rows"] = 0  # the forger's rewrite
        item["entry"] = canonical_json(body)
        link = chain_link(link, item["entry"].encode("ascii"))
        item["link"] = link.hex()
        item["signature"] = _b64(OTHER.sign(ENTRY_DOMAIN + link))

    assert _problem(document) == (1, "signature")
    # Against the forger's own key it is consistent: only the published key catches it.
    assert verify_document(document, public_key=OTHER.public_key).ok


def test_a_signature_over_an_entry_is_not_valid_as_a_checkpoint(
    document: dict[str, Any],
) -> None:
    entry = document["entries"][-1]
    body = canonical_json(
        {"service": "keyserver", "seq": 9, "head": entry["link"], "signed_at": T0.isoformat()}
    )
    document["checkpoints"].append({"seq": 9, "body": body, "signature": entry["signature"]})

    assert _problem(document) == (9, "signature")


def test_cutting_entries_off_the_end_is_caught_by_a_later_checkpoint(
    db_session: Session,
) -> None:
    _append(db_session, 4)
    write_checkpoint(db_session, SIGNER, service="keyserver", now=T0)
    document = _document(db_session)
    del document["entries"][-2:]

    assert _problem(document) == (4, "sequence")


def test_a_checkpoint_disagreeing_with_the_chain_is_detected(db_session: Session) -> None:
    _append(db_session, 3)
    write_checkpoint(db_session, SIGNER, service="keyserver", now=T0)
    document = _document(db_session)
    # Replace the last entry by a validly signed but different one: the checkpoint objects.
    last = document["entries"][-1]
    body = json.loads(last["entry"])
    body["rows"] = 99
    last["entry"] = canonical_json(body)
    link = chain_link(bytes.fromhex(document["entries"][-2]["link"]), last["entry"].encode())
    last["link"] = link.hex()
    last["signature"] = _b64(SIGNER.sign(ENTRY_DOMAIN + link))

    assert _problem(document) == (3, "link")


def test_truncation_keeps_a_checkpoint_so_the_rest_verifies(db_session: Session) -> None:
    _append(db_session, 6)

    deleted = truncate_before(
        db_session, SIGNER, service="keyserver", cutoff=T0 + timedelta(hours=3), now=T0
    )
    document = _document(db_session)

    assert deleted == 3
    assert [item["seq"] for item in document["entries"]] == [4, 5, 6]
    assert [item["seq"] for item in document["checkpoints"]] == [3]
    report = verify_document(document, public_key=SIGNER.public_key)
    assert report.ok
    assert report.first_seq == 4

    document["checkpoints"] = []
    assert _problem(document) == (4, "anchor")


def test_appending_after_a_full_truncation_continues_from_the_checkpoint(
    db_session: Session,
) -> None:
    _append(db_session, 2)
    truncate_before(db_session, SIGNER, service="keyserver", cutoff=T0 + timedelta(days=1), now=T0)

    _append(db_session, 1, start=T0 + timedelta(days=2))
    document = _document(db_session)

    assert [item["seq"] for item in document["entries"]] == [3]
    assert verify_document(document, public_key=SIGNER.public_key).ok


def test_verification_from_a_time_starts_at_the_signed_entry_before(
    document: dict[str, Any],
) -> None:
    report = verify_document(document, public_key=SIGNER.public_key, since=T0 + timedelta(hours=4))

    assert report.ok
    assert (report.first_seq, report.entries_checked) == (5, 2)

    document["entries"][3]["signature"] = document["entries"][0]["signature"]
    problem = verify_document(
        document, public_key=SIGNER.public_key, since=T0 + timedelta(hours=4)
    ).problem
    assert problem is not None
    assert (problem.seq, problem.reason) == (4, "signature")


def test_each_service_has_its_own_chain(db_session: Session) -> None:
    _append(db_session, 2, service="keyserver")
    _append(db_session, 3, service="verification")

    keyserver = verify_document(_document(db_session, "keyserver"), public_key=SIGNER.public_key)
    verification = verify_document(
        _document(db_session, "verification"), public_key=SIGNER.public_key
    )

    assert (keyserver.head_seq, verification.head_seq) == (2, 3)


def test_an_entry_moved_to_another_services_log_is_detected(db_session: Session) -> None:
    _append(db_session, 2, service="keyserver")
    document = _document(db_session)
    document["service"] = "verification"

    assert _problem(document) == (1, "sequence")


def test_checkpoints_sign_a_domain_separated_body(db_session: Session) -> None:
    _append(db_session, 1)
    checkpoint = write_checkpoint(db_session, SIGNER, service="keyserver", now=T0)
    assert checkpoint is not None
    assert checkpoint.signature == SIGNER.sign(CHECKPOINT_DOMAIN + checkpoint.body.encode())
    assert write_checkpoint(db_session, SIGNER, service="keyserver", now=T0) is None


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"format": "other"},
        {"format": DOCUMENT_FORMAT, "service": "keyserver", "entries": "nope"},
        {"format": DOCUMENT_FORMAT, "service": "keyserver", "entries": [{"seq": "1"}]},
        {"format": DOCUMENT_FORMAT, "service": "keyserver", "entries": [], "checkpoints": 5},
    ],
)
def test_malformed_documents_fail_without_raising(broken: dict[str, Any]) -> None:
    report = verify_document(broken, public_key=SIGNER.public_key)

    assert not report.ok


_FIELDS = ("entry", "link", "signature")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    index=st.integers(min_value=0, max_value=5),
    field=st.sampled_from(_FIELDS),
    position=st.integers(min_value=0),
    replacement=st.characters(min_codepoint=33, max_codepoint=126),
)
def test_any_single_character_change_is_detected(
    document: dict[str, Any], index: int, field: str, position: int, replacement: str
) -> None:
    tampered = copy.deepcopy(document)
    value = tampered["entries"][index][field]
    at = position % len(value)
    if value[at] == replacement:
        return
    tampered["entries"][index][field] = value[:at] + replacement + value[at + 1 :]

    report = verify_document(tampered, public_key=SIGNER.public_key)

    assert not report.ok
    assert report.problem is not None
    assert report.problem.seq is not None
    assert report.problem.seq <= index + 1


@settings(max_examples=100)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_random_documents_never_raise(junk: Any) -> None:
    document = {"format": DOCUMENT_FORMAT, "service": "keyserver", "entries": junk}
    if isinstance(junk, dict):
        document = {**junk, "format": DOCUMENT_FORMAT}

    report = verify_document(document, public_key=SIGNER.public_key)

    assert report.ok == (document.get("entries") == [] and not document.get("checkpoints"))
