"""Store the keys of one publish: insert new keys, revise stored ones, issue a revision token.

This is the storing half of ``POST /v1/publish`` (google-keyserver.md §2.5, §2.6). The
certificate has been checked and the request transformed before. Two ways in, which the
edge tries in order:

- :func:`store_new_publish`, the common case on PostgreSQL: no revision token and none of
  the keys stored yet. One autocommitted statement inserts the keys unless one of them is
  already stored, and answers None (having written nothing) when one is, or when the phone
  holds a token, or on another engine.
- :func:`store_publish`, everything else, in the caller's transaction: the stored rows of
  the uploaded keys are locked, every re-sent key is matched against the revision token
  the phone holds, and new keys are inserted with ``ON CONFLICT DO NOTHING``. Any refusal
  raises before anything is written that the caller's transaction would keep.

Both answer alike for the same stored state: a publish the first declines is decided by
the second, and a key stored concurrently is skipped by either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from crypto.encoding import decode_base64_lenient
from crypto.sealing import Keyring
from exposure.tek import ReportType, truncate
from keyserver.errors import (
    InvalidReportTypeTransition,
    InvalidRevisionToken,
    KeyAlreadyRevised,
    MissingRevisionToken,
    StoredKeyMismatch,
)
from keyserver.models import Exposure
from keyserver.service.revision import (
    RevisableKey,
    allowed_transition,
    decode_token,
    encode_token,
    next_token_keys,
)
from keyserver.service.transform import ValidatedKey
from keyserver.settings import KeyserverSettings
from keyserver.store import exposures as store

_logger = logging.getLogger(__name__)

#: Where a stored key came from; only published keys may be revised by a publish.
ORIGIN_PUBLISH = "publish"
#: Keys read from a peer's export file; only the same peer may revise them.
ORIGIN_IMPORT = "import"
#: What a stored or incoming report type may be ("" for keys published without a certificate).
_REPORT_TYPE_NAMES = frozenset({"", *(member.value for member in ReportType)})


@dataclass(frozen=True)
class RevisionSecrets:
    """What sealing and opening revision tokens needs."""

    keyring: Keyring
    aad: bytes


@dataclass
class StoreOutcome:
    """What one publish changed, for the response and the metrics."""

    inserted: int = 0
    revised: int = 0
    #: Stored keys silently left out because partial revisions are allowed.
    skipped: int = 0
    revision_token: str = ""


def _revisable(key: ValidatedKey | Exposure) -> RevisableKey:
    return RevisableKey(key.key, key.interval_number, key.interval_count)


def _row(key: ValidatedKey, health_authority_id: int | None) -> dict[str, Any]:
    return {
        "key": key.key,
        "transmission_risk": key.transmission_risk,
        "regions": store.encode_regions(key.regions),
        "traveler": key.traveler,
        "interval_number": key.interval_number,
        "interval_count": key.interval_count,
        "created_at": key.created_at,
        "origin": ORIGIN_PUBLISH,
        "health_authority_id": health_authority_id,
        "report_type": key.report_type,
        "days_since_symptom_onset": key.days_since_symptom_onset,
    }


@dataclass(frozen=True)
class _PreviousToken:
    """What the phone's previous revision token gives this publish."""

    #: Its keys, or None when no token was sent or the one sent does not open.
    keys: list[RevisableKey] | None
    #: A token was sent and is base64, whether or not it opened.
    presented: bool


def _previous_token(token: str, secrets: RevisionSecrets) -> _PreviousToken:
    """Open the phone's previous token, if it sent one it can use.

    As in the reference, a token that does not open is not an error by itself: it only
    matters if the publish re-sends stored keys, which then need it. And as there, one that
    is not even base64 counts as not sent (``missing_revision_token``), while base64 that
    does not open is an invalid token (``invalid_revision_token``).
    """
    if not token:
        return _PreviousToken(keys=None, presented=False)
    try:
        decode_base64_lenient(token)
    except ValueError:
        _logger.info("publish: revision token is not base64; treated as not sent")
        return _PreviousToken(keys=None, presented=False)
    try:
        return _PreviousToken(decode_token(secrets.keyring, secrets.aad, token), presented=True)
    except InvalidRevisionToken:
        _logger.info("publish: revision token did not open; treated as absent")
        return _PreviousToken(keys=None, presented=True)


def _check_revision(
    stored: Exposure, incoming: ValidatedKey, token_entry: RevisableKey | None
) -> bool:
    """Whether ``incoming`` revises ``stored``; raises when the revision is not allowed."""
    if (stored.interval_number, stored.interval_count) != (
        incoming.interval_number,
        incoming.interval_count,
    ):
        raise StoredKeyMismatch("Internal Server Error")
    if stored.origin != ORIGIN_PUBLISH:
        raise StoredKeyMismatch("Internal Server Error")
    if token_entry is None or (token_entry.interval_number, token_entry.interval_count) != (
        stored.interval_number,
        stored.interval_count,
    ):
        raise InvalidRevisionToken("revision token is invalid")
    if stored.report_type == incoming.report_type:
        return False
    if stored.revised_report_type is not None:
        if stored.revised_report_type == incoming.report_type:
            return False
        raise KeyAlreadyRevised("key has already been revised")
    if not allowed_transition(stored.report_type, incoming.report_type):
        raise InvalidReportTypeTransition(
            "invalid report type transition: cannot transition from "
            f'"{_named(stored.report_type)}" to "{_named(incoming.report_type)}"'
        )
    return True


def _named(report_type: str) -> str:
    # The reference's message names both types; only names from the closed set are quoted,
    # whatever a damaged row may hold.
    return report_type if report_type in _REPORT_TYPE_NAMES else "unknown"


def _publishable_rows(
    keys: Sequence[ValidatedKey], health_authority_id: int | None
) -> list[dict[str, Any]]:
    # A negative test revises earlier keys but is never published on its own.
    return [
        {**_row(key, health_authority_id), "publish": key.report_type != ReportType.NEGATIVE}
        for key in keys
    ]


def _token_for(
    previous: Sequence[RevisableKey],
    processed: Sequence[RevisableKey],
    secrets: RevisionSecrets,
    settings: KeyserverSettings,
    now: datetime,
) -> str:
    token_keys = next_token_keys(
        list(previous), list(processed), now=now, max_interval_age=settings.max_interval_age
    )
    if not token_keys:
        return ""
    return encode_token(
        secrets.keyring,
        secrets.aad,
        token_keys,
        min_length=settings.revision_token_min_length,
    )


def store_new_publish(
    connection: Connection,
    keys: Sequence[ValidatedKey],
    *,
    revision_token: str,
    health_authority_id: int | None,
    secrets: RevisionSecrets,
    settings: KeyserverSettings,
    now: datetime,
) -> StoreOutcome | None:
    """Store a publish of keys none of which is stored yet, in one statement; or None.

    ``connection`` should be in autocommit mode: the statement is the whole write. None
    (nothing written) when this way does not apply: the phone sent a revision token, a key
    is already stored, or the database is not PostgreSQL; then :func:`store_publish` decides.
    """
    if revision_token or not keys or not store.stores_in_one_statement(connection):
        return None
    inserted = store.insert_unless_any_stored(
        connection, _publishable_rows(keys, health_authority_id)
    )
    if inserted is None:
        return None
    processed = [_revisable(key) for key in keys]
    return StoreOutcome(
        inserted=inserted, revision_token=_token_for([], processed, secrets, settings, now)
    )


def store_publish(
    session: Session,
    keys: Sequence[ValidatedKey],
    *,
    revision_token: str,
    health_authority_id: int | None,
    secrets: RevisionSecrets,
    settings: KeyserverSettings,
    now: datetime,
) -> StoreOutcome:
    """Insert and revise ``keys`` in the caller's transaction; return what changed.

    Raises :class:`MissingRevisionToken` when stored keys are re-sent without a token (or
    with one that is not base64), :class:`InvalidRevisionToken` when the token does not
    open or does not list them, :class:`KeyAlreadyRevised`,
    :class:`InvalidReportTypeTransition`, and :class:`StoredKeyMismatch` for a re-sent key
    whose interval differs from the stored one.
    """
    outcome = StoreOutcome()
    existing = store.lock_existing(session, [key.key for key in keys])
    token = _previous_token(revision_token, secrets)
    previous = token.keys
    if existing and previous is None:
        if token.presented:
            raise InvalidRevisionToken("revision token is invalid")
        raise MissingRevisionToken("no revision token, but sent existing keys")
    token_entries = {entry.key: entry for entry in previous or ()}
    revised_at = truncate(now, settings.created_at_window)

    new_rows: list[dict[str, Any]] = []
    processed: list[RevisableKey] = []
    for key in keys:
        stored = existing.get(key.key)
        if stored is None:
            processed.append(_revisable(key))
            # A negative test revises earlier keys but is never published on its own.
            if key.report_type != ReportType.NEGATIVE:
                new_rows.append(_row(key, health_authority_id))
            continue
        if key.key not in token_entries and settings.allow_partial_revisions:
            outcome.skipped += 1
            continue
        if _check_revision(stored, key, token_entries.get(key.key)):
            store.revise_exposure(
                session,
                key.key,
                report_type=key.report_type,
                revised_at=revised_at,
                days_since_symptom_onset=key.days_since_symptom_onset,
                transmission_risk=key.transmission_risk,
                health_authority_id=health_authority_id,
                regions=store.encode_regions((*store.decode_regions(stored.regions), *key.regions)),
            )
            outcome.revised += 1
        processed.append(_revisable(stored))

    outcome.inserted = store.insert_exposures(session, new_rows)
    outcome.revision_token = _token_for(previous or [], processed, secrets, settings, now)
    return outcome


@dataclass
class ImportOutcome:
    """What storing one imported file changed."""

    inserted: int = 0
    revised: int = 0
    #: Keys already stored: ours, another source's, or this source's own with nothing new.
    duplicates: int = 0


#: One checked key of an imported file, as :func:`store_import` takes it: key, interval
#: number, interval count, transmission risk, created_at, report type, days since onset.
#: Plain tuples, because a file may hold 750,000 keys.
ImportedKey = tuple[bytes, int, int, int, datetime, str, int | None]


def _import_revises(stored: store.StoredKey, incoming: ImportedKey, source_id: int) -> bool:
    """Whether a peer's key revises the stored one; anything else is a duplicate.

    A peer never revises a key it did not send (ours, or another peer's), nor one whose
    interval it states differently; its own keys follow the transitions a phone's do, once.
    """
    _, start, count, _, _, report_type, _ = incoming
    if stored.origin != ORIGIN_IMPORT or stored.import_source_id != source_id:
        return False
    if (stored.interval_number, stored.interval_count) != (start, count):
        return False
    if stored.report_type == report_type or stored.revised_report_type is not None:
        return False
    return allowed_transition(stored.report_type, report_type)


def store_import(
    session: Session,
    keys: Callable[[bool], Iterable[Sequence[ImportedKey]]],
    *,
    region: str,
    source_id: int,
    file_id: int,
    settings: KeyserverSettings,
    now: datetime,
) -> ImportOutcome:
    """Store the keys of one imported file in the caller's transaction.

    ``keys(once)`` gives the file's checked keys a chunk at a time, and can be called more
    than once: with ``once`` each key comes once (the caller keeps a repeated key's last
    copy), without it as the file has them, which costs the caller less. New keys are
    inserted with their provenance (source and file) and ``region``, except negative ones,
    which only revise. A key already stored is never stored again; it is revised only when
    this same source sent it and the transition is allowed (:func:`allowed_transition`).

    A file of keys nobody stored yet, each given once, the common case, streams into the
    key table without a lookup (:func:`store.insert_imported_if_all_new`). Otherwise the
    file is gone through again, each key once, a chunk at a time, each chunk's stored keys
    looked up and decided on. Either way memory holds one chunk's keys, besides a file's
    negative keys.
    """
    regions = store.encode_regions((region,))
    negative = ReportType.NEGATIVE.value
    negatives: list[ImportedKey] = []

    def rows_of(chunk: Iterable[ImportedKey]) -> Iterator[tuple[Any, ...]]:
        for key, start, count, risk, created_at, report_type, days_since_onset in chunk:
            yield (
                key,
                risk,
                regions,
                False,
                start,
                count,
                created_at,
                ORIGIN_IMPORT,
                None,
                report_type,
                days_since_onset,
                source_id,
                file_id,
            )

    def new_rows() -> Iterator[tuple[Any, ...]]:
        for chunk in keys(False):
            negatives.extend(key for key in chunk if key[5] == negative)
            yield from rows_of(key for key in chunk if key[5] != negative)

    # A key given twice fails this like a stored key does: the unique index refuses both.
    inserted = store.insert_imported_if_all_new(session, new_rows())
    if inserted is not None:
        outcome = ImportOutcome(inserted=inserted)
        # Negative keys only revise: each is either stored already or ignored.
        _decide_stored(session, negatives, outcome, source_id, settings, now)
        return outcome
    outcome = ImportOutcome()
    for chunk in keys(True):
        stored = _decide_stored(session, chunk, outcome, source_id, settings, now)
        fresh = [key for key in chunk if key[5] != negative and key[0] not in stored]
        inserted = store.insert_imported(session, list(rows_of(fresh)))
        outcome.inserted += inserted
        # A key another transaction stored meanwhile was skipped.
        outcome.duplicates += len(fresh) - inserted
    return outcome


def _decide_stored(
    session: Session,
    keys: Sequence[ImportedKey],
    outcome: ImportOutcome,
    source_id: int,
    settings: KeyserverSettings,
    now: datetime,
) -> set[bytes]:
    """Revise or count as duplicates those of ``keys`` that are stored; return them."""
    stored_keys = store.stored_among(session, [key[0] for key in keys])
    revised_at = truncate(now, settings.truncate_window)
    for incoming in keys:
        key, _, _, risk, _, report_type, days_since_onset = incoming
        stored = stored_keys.get(key)
        if stored is None:
            continue
        if not _import_revises(stored, incoming, source_id):
            outcome.duplicates += 1
            continue
        store.revise_exposure(
            session,
            key,
            report_type=report_type,
            revised_at=revised_at,
            days_since_symptom_onset=days_since_onset,
            transmission_risk=risk,
            health_authority_id=stored.health_authority_id,
            regions=stored.regions,
        )
        outcome.revised += 1
    return set(stored_keys)
