"""The retention log: append-only, hash-chained, every entry signed with Ed25519.

Each purge of each kind of data appends one entry: a JSON object (what, under which policy,
the cutoff, rows and blobs removed, the oldest item left, when) serialized canonically
(sorted keys, no spaces, ASCII). The entry's *link* is ``crypto.audit.chain_link`` of the
previous link and the entry's bytes, so changing, removing, inserting or reordering any
entry changes every later link; the service signs each link with its log key
(``ENTRY_DOMAIN || link``), so recomputing the chain after a change needs that private key.
The public key is published (``GET /audit/public-keys``, ``exposure audit public-key``).

A *checkpoint* is a signed statement "after entry ``seq`` the head is ``link``". One is
written at the end of every purge run; an auditor who keeps the last checkpoint they saw can
later prove the log was not cut back behind it. Checkpoints also let the log's own
retention delete old entries: verification then starts at the checkpoint of the last
deleted entry, and the entry that records the truncation is itself in the chain.

Verification (:func:`verify_document`) needs only an exported document and the public key:
it recomputes every link, checks every signature and that ``seq`` runs 1, 2, 3... without a
gap, and reports the first entry that fails and why.

Example::

    with unit_of_work(sessions) as session:
        append_entry(session, signer, service="keyserver", fields={...}, recorded_at=now)
        write_checkpoint(session, signer, service="keyserver", now=now)
    with unit_of_work(sessions) as session:
        document = export_document(session, service="keyserver", public_key=signer.public_key)
    report = verify_document(document, public_key=signer.public_key)
    assert report.ok
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from crypto.audit import GENESIS, AuditSigner, chain_link, verify_ed25519
from crypto.errors import InvalidSignature
from exposure.retention.models import RetentionCheckpoint, RetentionLogEntry

__all__ = [
    "CHECKPOINT_DOMAIN",
    "DOCUMENT_FORMAT",
    "ENTRY_DOMAIN",
    "Problem",
    "VerificationReport",
    "append_entry",
    "canonical_json",
    "export_document",
    "log_entries",
    "truncate_before",
    "verify_document",
    "write_checkpoint",
]

#: Prefix of the message each entry's signature covers (separates it from checkpoints).
ENTRY_DOMAIN = b"exposure-retention-entry-v1\x00"
#: Prefix of the message each checkpoint's signature covers.
CHECKPOINT_DOMAIN = b"exposure-retention-checkpoint-v1\x00"
#: The ``format`` of an exported log document.
DOCUMENT_FORMAT = "exposure-retention-log/v1"


def canonical_json(value: Mapping[str, Any]) -> str:
    """The one serialization of ``value`` that is hashed: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _head(session: Session, service: str) -> tuple[int, bytes]:
    """The last seq and its link: from the newest entry, else the newest checkpoint."""
    last = session.scalars(
        select(RetentionLogEntry)
        .where(RetentionLogEntry.service == service)
        .order_by(RetentionLogEntry.seq.desc())
        .limit(1)
    ).first()
    if last is not None:
        return last.seq, last.link
    checkpoint = session.scalars(
        select(RetentionCheckpoint)
        .where(RetentionCheckpoint.service == service)
        .order_by(RetentionCheckpoint.seq.desc())
        .limit(1)
    ).first()
    if checkpoint is not None:
        body = json.loads(checkpoint.body)
        return checkpoint.seq, bytes.fromhex(body["head"])
    return 0, GENESIS


def append_entry(
    session: Session,
    signer: AuditSigner,
    *,
    service: str,
    kind: str,
    fields: Mapping[str, Any],
    recorded_at: datetime,
) -> RetentionLogEntry:
    """Append one signed entry after the current head of ``service``'s chain.

    ``fields`` must be JSON-able; ``service``, ``seq`` and ``kind`` are added. Callers
    serialize appends (the purge job holds a lease); the unique ``(service, seq)`` makes a
    racing second append fail instead of forking the chain.
    """
    seq, previous = _head(session, service)
    body = dict(fields)
    body.update({"service": service, "seq": seq + 1, "kind": kind})
    text = canonical_json(body)
    link = chain_link(previous, text.encode("ascii"))
    row = RetentionLogEntry(
        service=service,
        seq=seq + 1,
        kind=kind,
        recorded_at=recorded_at,
        entry=text,
        link=link,
        signature=signer.sign(ENTRY_DOMAIN + link),
    )
    session.add(row)
    # Flushed now so a second append in this transaction sees this one as the head.
    session.flush()
    return row


def write_checkpoint(
    session: Session, signer: AuditSigner, *, service: str, now: datetime
) -> RetentionCheckpoint | None:
    """Sign the current head of ``service``'s chain; None if empty or already signed."""
    seq, head = _head(session, service)
    if seq == 0:
        return None
    exists = session.scalar(
        select(func.count())
        .select_from(RetentionCheckpoint)
        .where(RetentionCheckpoint.service == service, RetentionCheckpoint.seq == seq)
    )
    if exists:
        return None
    return _add_checkpoint(session, signer, service=service, seq=seq, head=head, now=now)


def _add_checkpoint(
    session: Session,
    signer: AuditSigner,
    *,
    service: str,
    seq: int,
    head: bytes,
    now: datetime,
) -> RetentionCheckpoint:
    body = canonical_json(
        {"service": service, "seq": seq, "head": head.hex(), "signed_at": now.isoformat()}
    )
    row = RetentionCheckpoint(
        service=service,
        seq=seq,
        signed_at=now,
        body=body,
        signature=signer.sign(CHECKPOINT_DOMAIN + body.encode("ascii")),
    )
    session.add(row)
    # Flushed now so the rest of the transaction (a truncation) sees it.
    session.flush()
    return row


def truncate_before(
    session: Session, signer: AuditSigner, *, service: str, cutoff: datetime, now: datetime
) -> int:
    """Delete entries recorded before ``cutoff``, keeping a checkpoint where they end.

    The checkpoint of the last deleted entry is written first (signed over the link that
    entry stored), so the remaining chain still verifies from it; older checkpoints go with
    the entries. Returns how many entries were deleted.
    """
    last_expired = session.scalar(
        select(func.max(RetentionLogEntry.seq)).where(
            RetentionLogEntry.service == service, RetentionLogEntry.recorded_at < cutoff
        )
    )
    if last_expired is None:
        return 0
    anchor = session.scalars(
        select(RetentionLogEntry).where(
            RetentionLogEntry.service == service, RetentionLogEntry.seq == last_expired
        )
    ).one()
    has_checkpoint = session.scalar(
        select(func.count())
        .select_from(RetentionCheckpoint)
        .where(RetentionCheckpoint.service == service, RetentionCheckpoint.seq == last_expired)
    )
    if not has_checkpoint:
        _add_checkpoint(
            session, signer, service=service, seq=last_expired, head=anchor.link, now=now
        )
    deleted = session.execute(
        delete(RetentionLogEntry).where(
            RetentionLogEntry.service == service, RetentionLogEntry.seq <= last_expired
        )
    )
    session.execute(
        delete(RetentionCheckpoint).where(
            RetentionCheckpoint.service == service, RetentionCheckpoint.seq < last_expired
        )
    )
    return int(getattr(deleted, "rowcount", 0))


def log_entries(
    session: Session, service: str, *, after_seq: int = 0, limit: int | None = None
) -> list[RetentionLogEntry]:
    """Entries of ``service`` with seq above ``after_seq``, oldest first."""
    statement = (
        select(RetentionLogEntry)
        .where(RetentionLogEntry.service == service, RetentionLogEntry.seq > after_seq)
        .order_by(RetentionLogEntry.seq)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.scalars(statement))


def export_document(
    session: Session,
    *,
    service: str,
    public_key: bytes,
    after_seq: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """The log of ``service`` as a self-contained JSON document an auditor can verify.

    ``public_key`` is included for convenience only: an auditor should verify against a
    key obtained independently (``--public-key``).
    """
    entries = log_entries(session, service, after_seq=after_seq, limit=limit)
    checkpoints = session.scalars(
        select(RetentionCheckpoint)
        .where(RetentionCheckpoint.service == service)
        .order_by(RetentionCheckpoint.seq)
    )
    return {
        "format": DOCUMENT_FORMAT,
        "service": service,
        "public_key": _b64(public_key),
        "entries": [
            {
                "seq": row.seq,
                "entry": row.entry,
                "link": row.link.hex(),
                "signature": _b64(row.signature),
            }
            for row in entries
        ],
        "checkpoints": [
            {"seq": row.seq, "body": row.body, "signature": _b64(row.signature)}
            for row in checkpoints
        ],
    }


# ---- verification (offline: needs the document and the public key only) --------------


@dataclass(frozen=True)
class Problem:
    """The first thing that does not verify."""

    #: The seq of the entry (or checkpoint) at fault, or None for the document itself.
    seq: int | None
    #: ``link`` (contents changed, entry removed, inserted or reordered), ``signature`` (not
    #: signed by the published key), ``sequence`` (a gap or repeat), ``anchor`` (no
    #: checkpoint to start from), ``malformed`` (not a log document).
    reason: str
    detail: str


@dataclass(frozen=True)
class VerificationReport:
    service: str
    ok: bool
    entries_checked: int
    first_seq: int | None
    head_seq: int | None
    head: str | None
    problem: Problem | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "first_seq": self.first_seq,
            "head_seq": self.head_seq,
            "head": self.head,
            "problem": None
            if self.problem is None
            else {
                "seq": self.problem.seq,
                "reason": self.problem.reason,
                "detail": self.problem.detail,
            },
            "entries_by_kind": dict(sorted(self.kinds.items())),
        }


class _Failed(Exception):  # noqa: N818 - internal control flow, never escapes
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _decode_b64(text: object, what: str, seq: int | None) -> bytes:
    try:
        if not isinstance(text, str):
            raise ValueError(what)
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _Failed(Problem(seq, "malformed", f"{what} is not base64")) from error
    # Only the canonical spelling: stray bits in the last character are a change too.
    if _b64(data) != text:
        raise _Failed(Problem(seq, "malformed", f"{what} is not canonical base64"))
    return data


@dataclass(frozen=True)
class _Checkpoint:
    seq: int
    head: bytes
    body: str
    signature: bytes


def _parse_checkpoint(item: Mapping[str, Any], service: str) -> _Checkpoint:
    seq = item.get("seq")
    body = item.get("body")
    if not isinstance(seq, int) or not isinstance(body, str) or not body.isascii():
        raise _Failed(Problem(None, "malformed", "a checkpoint lacks seq or body"))
    signature = _decode_b64(item.get("signature"), "checkpoint signature", seq)
    try:
        parsed = json.loads(body)
        head = bytes.fromhex(parsed["head"])
        if parsed["service"] != service or parsed["seq"] != seq or len(head) != len(GENESIS):
            raise ValueError("mismatch")
    except (ValueError, KeyError, TypeError) as error:
        raise _Failed(Problem(seq, "malformed", "checkpoint body does not match")) from error
    return _Checkpoint(seq=seq, head=head, body=body, signature=signature)


def _signed_by_any(keys: Sequence[bytes], message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            verify_ed25519(key, message, signature)
        except InvalidSignature:
            continue
        return True
    return False


def _checked(checkpoint: _Checkpoint, keys: Sequence[bytes]) -> bytes:
    """The checkpoint's head, once its signature holds under one of ``keys``."""
    message = CHECKPOINT_DOMAIN + checkpoint.body.encode("ascii")
    if not _signed_by_any(keys, message, checkpoint.signature):
        raise _Failed(
            Problem(checkpoint.seq, "signature", "checkpoint not signed by the published key")
        )
    return checkpoint.head


def _entries_of(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = document.get("entries")
    if not isinstance(entries, list) or not all(isinstance(item, dict) for item in entries):
        raise _Failed(Problem(None, "malformed", "entries must be a list of objects"))
    return entries


def _start_point(
    entries: Sequence[Mapping[str, Any]],
    checkpoints: Mapping[int, _Checkpoint],
    start_index: int,
    keys: Sequence[bytes],
) -> bytes:
    """The link before ``entries[start_index]``: genesis, a checkpoint or a signed entry."""
    first_seq = entries[start_index].get("seq")
    if not isinstance(first_seq, int):
        raise _Failed(Problem(None, "malformed", "an entry lacks its seq"))
    if first_seq - 1 in checkpoints:
        return _checked(checkpoints[first_seq - 1], keys)
    if first_seq == 1:
        return GENESIS
    if start_index > 0:
        previous = entries[start_index - 1]
        link = _entry_link(previous, first_seq - 1)
        _check_signature(previous, link, keys, first_seq - 1)
        return link
    raise _Failed(
        Problem(first_seq, "anchor", f"no checkpoint for seq {first_seq - 1} to start from")
    )


def _entry_link(item: Mapping[str, Any], seq: int) -> bytes:
    text = str(item.get("link"))
    try:
        link = bytes.fromhex(text)
    except ValueError as error:
        raise _Failed(Problem(seq, "malformed", "link is not hex")) from error
    # One spelling only (lower-case hex, as written): a changed character is a change.
    if len(link) != len(GENESIS) or text != link.hex():
        raise _Failed(Problem(seq, "malformed", "link is not 32 bytes of lower-case hex"))
    return link


def _check_signature(item: Mapping[str, Any], link: bytes, keys: Sequence[bytes], seq: int) -> None:
    signature = _decode_b64(item.get("signature"), "signature", seq)
    if not _signed_by_any(keys, ENTRY_DOMAIN + link, signature):
        raise _Failed(Problem(seq, "signature", "entry not signed by the published key"))


def verify_document(
    document: Mapping[str, Any],
    *,
    public_key: bytes | Sequence[bytes],
    since: datetime | None = None,
) -> VerificationReport:
    """Verify an exported log against ``public_key``; never raises for a bad document.

    ``public_key`` may be several keys (the current one and those it replaced): each
    signature must hold under one of them. With ``since``, verification starts at the first
    entry recorded at or after it (the link before it comes from a signed checkpoint or the
    signed previous entry). Checkpoints before the start are not checked.
    """
    keys = (public_key,) if isinstance(public_key, bytes) else tuple(public_key)
    service = str(document.get("service", ""))
    checked = 0
    kinds: dict[str, int] = {}
    first_seq: int | None = None
    head_seq: int | None = None
    head: bytes | None = None
    try:
        if document.get("format") != DOCUMENT_FORMAT:
            raise _Failed(Problem(None, "malformed", f"format is not {DOCUMENT_FORMAT}"))
        raw_checkpoints = document.get("checkpoints", [])
        if not isinstance(raw_checkpoints, list):
            raise _Failed(Problem(None, "malformed", "checkpoints must be a list"))
        checkpoints = {
            checkpoint.seq: checkpoint
            for checkpoint in (
                _parse_checkpoint(item, service)
                for item in raw_checkpoints
                if isinstance(item, dict)
            )
        }
        entries = _entries_of(document)
        start_index = 0
        if since is not None:
            start_index = next(
                (i for i, item in enumerate(entries) if _recorded_at(item) >= since),
                len(entries),
            )
        if start_index < len(entries):
            previous = _start_point(entries, checkpoints, start_index, keys)
            expected_seq = int(entries[start_index]["seq"])
            first_seq = expected_seq
            for item in entries[start_index:]:
                seq = item.get("seq")
                if seq != expected_seq:
                    raise _Failed(
                        Problem(
                            expected_seq, "sequence", f"expected seq {expected_seq}, found {seq}"
                        )
                    )
                text = item.get("entry")
                if not isinstance(text, str) or not text.isascii():
                    raise _Failed(Problem(expected_seq, "malformed", "entry is not ASCII text"))
                stored = _entry_link(item, expected_seq)
                computed = chain_link(previous, text.encode("ascii"))
                if not hmac.compare_digest(computed, stored):
                    raise _Failed(
                        Problem(
                            expected_seq,
                            "link",
                            "the entry or one before it was changed, removed or reordered",
                        )
                    )
                _check_signature(item, stored, keys, expected_seq)
                body = _parsed(text, expected_seq)
                if body.get("seq") != expected_seq or body.get("service") != service:
                    raise _Failed(
                        Problem(expected_seq, "sequence", "entry names another seq or service")
                    )
                kind = str(body.get("kind", ""))
                kinds[kind] = kinds.get(kind, 0) + 1
                previous = stored
                head_seq, head = expected_seq, stored
                checked += 1
                expected_seq += 1
            # A checkpoint past the head proves entries were cut off the end.
            for seq, checkpoint in sorted(checkpoints.items()):
                position = seq - first_seq
                if position < 0:
                    continue  # before the verified range
                head_link = _checked(checkpoint, keys)
                if position >= checked:
                    raise _Failed(
                        Problem(
                            seq, "sequence", f"a signed checkpoint names seq {seq}, past the end"
                        )
                    )
                if not hmac.compare_digest(
                    _entry_link(entries[start_index + position], seq), head_link
                ):
                    raise _Failed(Problem(seq, "link", "a signed checkpoint disagrees"))
    except _Failed as failure:
        return VerificationReport(
            service=service,
            ok=False,
            entries_checked=checked,
            first_seq=first_seq,
            head_seq=head_seq,
            head=head.hex() if head is not None else None,
            problem=failure.problem,
            kinds=kinds,
        )
    return VerificationReport(
        service=service,
        ok=True,
        entries_checked=checked,
        first_seq=first_seq,
        head_seq=head_seq,
        head=head.hex() if head is not None else None,
        kinds=kinds,
    )


def _parsed(text: str, seq: int) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError as error:
        raise _Failed(Problem(seq, "malformed", "entry is not JSON")) from error
    if not isinstance(body, dict):
        raise _Failed(Problem(seq, "malformed", "entry is not a JSON object"))
    return body


def _recorded_at(item: Mapping[str, Any]) -> datetime:
    try:
        body = json.loads(str(item.get("entry")))
        return datetime.fromisoformat(body["as_of"])
    except (ValueError, KeyError, TypeError) as error:
        seq = item.get("seq")
        where = seq if isinstance(seq, int) else None
        raise _Failed(Problem(where, "malformed", "entry lacks as_of")) from error
