"""Concurrent publishes of the same keys: what one phone retrying, or two racing, gets.

The common publish is one autocommitted statement on PostgreSQL and a transaction
elsewhere; either way a key is stored once, whichever request wins, and a request that
finds the keys already stored must show the revision token, as before.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from httpx2 import Response

from tests.functional.keyserver.conftest import Api

RACERS = 8


def _race(calls: list[Callable[[], Response]]) -> list[Response]:
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Response]) -> Response:
        start.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def _json(response: Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body


def test_concurrent_uploads_of_the_same_keys_store_each_key_once(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(14)
    body = phone.body(keys)

    answers = _race([lambda: api.publish(body) for _ in range(RACERS)])

    stored = api.stored()
    assert len(stored) == 14
    accepted = [_json(answer) for answer in answers if answer.status_code == 200]
    assert accepted, [_json(answer) for answer in answers]
    # Every key was inserted by exactly one request, however the race went.
    assert sum(answer.get("insertedExposures", 0) for answer in accepted) == 14
    assert all(answer["revisionToken"] for answer in accepted)
    # A request that came after the keys were stored re-sent them without a token.
    refused = Counter(_json(answer)["code"] for answer in answers if answer.status_code != 200)
    assert set(refused) <= {"missing_revision_token"}
    assert all(answer.status_code in {200, 400} for answer in answers)


def test_a_revision_racing_a_re_upload_without_a_token(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(3)
    token = _json(api.publish(phone.body(keys, report_type="likely")))["revisionToken"]

    revision, re_upload = _race(
        [
            lambda: api.publish(phone.body(keys, report_type="confirmed", revisionToken=token)),
            lambda: api.publish(phone.body(keys, report_type="confirmed")),
        ]
    )

    assert revision.status_code == 200, _json(revision)
    assert (re_upload.status_code, _json(re_upload)["code"]) == (400, "missing_revision_token")
    rows = api.stored().values()
    assert {(row.report_type, row.revised_report_type) for row in rows} == {("likely", "confirmed")}


def test_concurrent_publishes_of_different_keys_all_succeed(api: Api) -> None:
    phones = [api.phone() for _ in range(RACERS)]
    bodies = [phone.body(phone.keys(14)) for phone in phones]

    answers = _race([lambda body=body: api.publish(body) for body in bodies])

    assert [answer.status_code for answer in answers] == [200] * RACERS
    assert [_json(answer)["insertedExposures"] for answer in answers] == [14] * RACERS
    assert len(api.stored()) == 14 * RACERS
