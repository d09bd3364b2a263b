"""The invalid-code lockout holds exactly under concurrency, on both engines.

Forty wrong codes sent at once, on real threads through the whole app, must get exactly
the limit of ``code_invalid`` answers and ``quota_exceeded`` for the rest: the limit caps
the lookups made, not just the answers counted afterwards (issue 12, where 40 parallel
guesses got 11 to 14 lookups against a limit of 10).
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.functional.verification.conftest import Api, make_api
from verification import store
from verification.service import lockout

TODAY = "2026-11-25"
GUESSES = 40
LIMIT = 10


def _guess_at_once(api: Api, clients: list[str]) -> Counter[tuple[int, str]]:
    """One wrong code per client address, all released together; their (status, code)."""
    start = threading.Barrier(len(clients))

    def guess(index: int) -> tuple[int, str]:
        # A client per thread (TestClient is not shared across threads), each with its own
        # address; the app and its database are the one under test.
        client = TestClient(api.client.app, client=(clients[index], 50_000))
        start.wait()
        response = client.post(
            "/api/verify",
            json={"code": f"{index:08d}"},
            headers={"X-API-Key": api.device_key},
        )
        return response.status_code, response.json()["errorCode"]

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return Counter(pool.map(guess, range(len(clients))))


def test_concurrent_wrong_codes_from_one_client_get_exactly_its_limit(
    database_url: str, tmp_path: Path
) -> None:
    for api in make_api(
        database_url,
        tmp_path,
        invalid_codes_per_client_per_hour=LIMIT,
        invalid_codes_per_realm_per_window=1_000,
    ):
        answers = _guess_at_once(api, ["10.0.0.1"] * GUESSES)

        assert answers == {
            (400, "code_invalid"): LIMIT,
            (429, "quota_exceeded"): GUESSES - LIMIT,
        }
        # Locked out even with the right code, while another client is not.
        issued = api.admin("/api/issue", {"testType": "confirmed", "symptomDate": TODAY})
        locked = TestClient(api.client.app, client=("10.0.0.1", 1)).post(
            "/api/verify", json={"code": issued["code"]}, headers={"X-API-Key": api.device_key}
        )
        assert (locked.status_code, locked.json()["errorCode"]) == (429, "quota_exceeded")
        assert api.device("/api/verify", {"code": issued["code"]})["status"] == 200


def test_concurrent_wrong_codes_from_many_clients_get_exactly_the_realm_limit(
    database_url: str, tmp_path: Path
) -> None:
    for api in make_api(
        database_url,
        tmp_path,
        invalid_codes_per_client_per_hour=1_000,
        invalid_codes_per_realm_per_window=LIMIT,
    ):
        answers = _guess_at_once(api, [f"10.0.1.{index}" for index in range(GUESSES)])

        assert answers == {
            (400, "code_invalid"): LIMIT,
            (429, "quota_exceeded"): GUESSES - LIMIT,
        }


def test_right_codes_and_refused_requests_spend_no_guesses(api: Api) -> None:
    for _ in range(LIMIT + 2):
        code = api.admin("/api/issue", {"testType": "likely", "symptomDate": TODAY})["code"]
        # Refused before any lookup, then a lookup of the wrong type, then a good one.
        bad_accept = api.device("/api/verify", {"code": code, "accept": ["x"]})
        not_accepted = api.device("/api/verify", {"code": code, "accept": ["confirmed"]})
        verified = api.device("/api/verify", {"code": code})
        assert (bad_accept["status"], not_accepted["status"], verified["status"]) == (400, 412, 200)

    answers = [api.device("/api/verify", {"code": "00000000"})["errorCode"] for _ in range(11)]

    assert answers == ["code_invalid"] * LIMIT + ["quota_exceeded"]


def test_a_locked_out_client_does_not_spend_its_realms_guesses(
    database_url: str, tmp_path: Path
) -> None:
    for api in make_api(
        database_url,
        tmp_path,
        invalid_codes_per_client_per_hour=2,
        invalid_codes_per_realm_per_window=3,
    ):
        headers = {"X-API-Key": api.device_key}
        hammering = TestClient(api.client.app, client=("10.0.2.1", 1), headers=headers)
        other = TestClient(api.client.app, client=("10.0.2.2", 1), headers=headers)

        def guess(client: TestClient) -> str:
            response = client.post("/api/verify", json={"code": "00000000"})
            return str(response.json()["errorCode"])

        assert [guess(hammering) for _ in range(20)] == ["code_invalid"] * 2 + [
            "quota_exceeded"
        ] * 18
        # The realm has had two failed lookups of its three: the other client gets one.
        assert [guess(other) for _ in range(2)] == ["code_invalid", "quota_exceeded"]


def test_a_found_code_is_answered_even_when_its_slots_cannot_be_given_back(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    row_value = "-".join(("row", "value", "31337"))  # built, so no source line holds it

    def broken(*_arguments: object, **_keywords: object) -> None:
        raise RuntimeError(row_value)

    monkeypatch.setattr(lockout, "give_back", broken)
    # The transaction's way settles after its work; on PostgreSQL the found code's slots
    # go back in the claim's own statement, which has nothing left to fail apart.
    monkeypatch.setattr(store, "counts_in_one_statement", lambda _connection: False)
    code = api.admin("/api/issue", {"testType": "confirmed", "symptomDate": TODAY})["code"]

    verified = api.device("/api/verify", {"code": code})

    assert verified["status"] == 200
    assert verified["token"]
    assert "verify (settling) failed: RuntimeError" in caplog.text
    assert row_value not in caplog.text  # the type and the stack, never the message


def test_a_refused_lookup_is_answered_even_when_its_slots_cannot_be_given_back(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    row_value = "-".join(("row", "value", "27182"))

    def broken(*_arguments: object, **_keywords: object) -> None:
        raise RuntimeError(row_value)

    monkeypatch.setattr(lockout, "give_back", broken)
    code = api.admin("/api/issue", {"testType": "likely", "symptomDate": TODAY})["code"]

    refused = api.device("/api/verify", {"code": code, "accept": ["confirmed"]})

    assert (refused["status"], refused["errorCode"]) == (412, "unsupported_test_type")
    assert "verify (settling) failed: RuntimeError" in caplog.text
    assert row_value not in caplog.text
