"""Downloading published keys: index.txt, the new export files, their signatures, the keys.

A key server (this one, Google's, any GAEN server or CDN) publishes ``<root>/index.txt``:
the names of its current export files, oldest first, one per line. A phone downloads the
index, then only the files it has not processed yet, one at a time:

1. the file is read as a zip of ``export.bin`` and ``export.sig`` (size-capped);
2. each signature in export.sig names its key by ``verification_key_id`` and
   ``verification_key_version``; it is checked (ECDSA P-256 over SHA-256 of export.bin)
   against the configured :class:`ExportSigningKey` with that id and version, as iOS and
   Android do; a file that no configured key verifies is refused before a single key in it
   is decoded;
3. the keys (and revised keys) are decoded and handed to a matcher
   (:mod:`exposure.client.matching`); the keys that were heard are kept in the
   :class:`SyncState`, everything else is dropped with the file;
4. the file's name joins the processed set, and the state is written to disk at once.

A refused file (bad signature, listed in index.txt but missing, malformed, too large,
failed download) is reported in :class:`SyncReport` and left unprocessed, so the next sync
tries it again; files processed before and after it stay processed. Memory does not grow
with the number of files: one file at a time is held, plus the matched keys.

A key may appear again in a later file's ``revised_keys`` with a new report type (likely to
confirmed, or revoked): the revised entry wins over the original, whichever file is
processed first.

Example::

    source = ExportSource(base_url="https://cdn.example/exports", index_path="v1/index.txt",
                          signing_keys=(ExportSigningKey.from_pem("310", "v1", pem),))
    index = SightingIndex(phone.sightings.sightings)
    with ExportSync(source, SyncState.load(path), state_path=path) as sync:
        report = sync.run(index, now=now)
    windows = exposure_windows(sync.state.matched_keys, index, RiskModel())
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from google.protobuf.message import DecodeError

from crypto.errors import InvalidKey, InvalidSignature
from crypto.gaen import MAX_INTERVAL_COUNT, interval_number
from crypto.signing import load_public_key, verify_signature
from exposure.client._http import DEFAULT_TIMEOUT, new_http_client
from exposure.client.errors import (
    ClientErrorCode,
    ExportRefused,
    IndexUnavailable,
    StateUnreadable,
)
from exposure.client.matching import DiagnosisKey, KeyMatcher, KeyWindow
from exposure.export.errors import ExportErrorCode, ExportFormatError
from exposure.export.model import EXPORT_HEADER, KEY_LENGTH, ReportType
from exposure.export.proto import export_pb2
from exposure.export.reader import (
    DEFAULT_MAX_MEMBER_SIZE,
    parse_signature_list,
    read_export_members,
)

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "KEY_RETENTION",
    "ExportSigningKey",
    "ExportSource",
    "ExportSync",
    "FileRefusal",
    "MatchedKey",
    "SyncReport",
    "SyncState",
    "VerifiedExport",
    "decode_export_keys",
    "open_export",
]

#: Largest export file downloaded; a bigger one is refused as ``too_large`` unread.
DEFAULT_MAX_FILE_SIZE = DEFAULT_MAX_MEMBER_SIZE
#: Matched keys are kept this long after their validity ended, as phones keep sightings.
KEY_RETENTION = timedelta(days=14)
#: Names index.txt may list: relative paths of plain segments, as key servers write them.
_INDEX_ENTRY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_STATE_FORMAT = "exposure.client.sync/1"
_REPORT_TYPES = {member.value: member for member in ReportType}


@dataclass(frozen=True, slots=True)
class ExportSigningKey:
    """A health authority's export public key, as Apple and Google configure it on phones.

    ``key_id`` is the ``verification_key_id`` of the signatures it checks (Apple asks for the
    MCC, e.g. ``"310"``), ``key_version`` their ``verification_key_version`` (e.g. ``"v1"``).
    """

    key_id: str
    key_version: str
    public_key: EllipticCurvePublicKey = field(repr=False)

    @classmethod
    def from_pem(cls, key_id: str, key_version: str, pem: bytes) -> ExportSigningKey:
        """Load a P-256 public key from PEM; raises :class:`ValueError` for anything else."""
        try:
            return cls(key_id, key_version, load_public_key(pem))
        except InvalidKey as error:
            raise ValueError("not a P-256 public key in PEM") from error


@dataclass(frozen=True, slots=True)
class ExportSource:
    """Where a key server publishes its exports, and the keys that sign them.

    ``index_path`` and every name index.txt lists are resolved against ``base_url``; for
    this server that is ``<server>/exports`` and ``<root>/index.txt``.
    """

    base_url: str
    index_path: str
    signing_keys: tuple[ExportSigningKey, ...]
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    timeout: float = DEFAULT_TIMEOUT

    def url(self, name: str) -> str:
        return f"{self.base_url.rstrip('/')}/{name.lstrip('/')}"


class VerifiedExport:
    """The keys of an export whose signature verified, decoded as they are needed.

    A file may hold 500,000 keys and a phone heard a handful of them, so matching reads only
    what derivation needs (:meth:`match`) and decodes a key whole only when it matched;
    :attr:`keys` and :attr:`revised_keys` decode everything, for callers that want it.
    """

    def __init__(
        self, message: export_pb2.TemporaryExposureKeyExport, signed_by: ExportSigningKey
    ) -> None:
        self._message = message
        self._cached_entries: tuple[export_pb2.TemporaryExposureKey, ...] | None = None
        self._cached_windows: list[KeyWindow] | None = None
        self.signed_by = signed_by
        self.region = message.region if message.HasField("region") else None
        self.start_timestamp = (
            message.start_timestamp if message.HasField("start_timestamp") else None
        )
        self.end_timestamp = message.end_timestamp if message.HasField("end_timestamp") else None

    @property
    def keys(self) -> list[DiagnosisKey]:
        """Every usable key of the file (those no phone could have sent are left out)."""
        return _diagnosis_keys(self._message.keys)[0]

    @property
    def revised_keys(self) -> list[DiagnosisKey]:
        """Every usable revised key of the file."""
        return _diagnosis_keys(self._message.revised_keys)[0]

    @property
    def invalid_keys(self) -> int:
        """Entries no phone could have sent: not 16 bytes, or a period outside 1..144."""
        return sum(1 for window in self._windows() if not _is_usable(window[0], window[2]))

    def __len__(self) -> int:
        """Keys and revised keys, usable or not."""
        return len(self._message.keys) + len(self._message.revised_keys)

    def match(self, matcher: KeyMatcher) -> list[tuple[DiagnosisKey, bool]]:
        """The keys ``matcher`` says were heard, each with whether it is a revision."""
        primary = len(self._message.keys)
        entries = self._entries()
        found: list[tuple[DiagnosisKey, bool]] = []
        for position in matcher.match(self._windows()):
            key = _diagnosis_key(entries[position])
            if key is not None:
                found.append((key, position >= primary))
        return found

    def _entries(self) -> tuple[export_pb2.TemporaryExposureKey, ...]:
        if self._cached_entries is None:
            self._cached_entries = (*self._message.keys, *self._message.revised_keys)
        return self._cached_entries

    def _windows(self) -> list[KeyWindow]:
        # Computed once: what matching reads of every entry, in entry order.
        if self._cached_windows is None:
            self._cached_windows = [
                (entry.key_data, entry.rolling_start_interval_number, entry.rolling_period)
                for entry in self._entries()
            ]
        return self._cached_windows


def _refuse_format(error: ExportFormatError) -> ExportRefused:
    if error.code is ExportErrorCode.TOO_LARGE:
        return ExportRefused(ClientErrorCode.TOO_LARGE, str(error))
    return ExportRefused(ClientErrorCode.BAD_EXPORT, str(error))


def open_export(
    data: bytes,
    signing_keys: Sequence[ExportSigningKey],
    *,
    max_member_size: int = DEFAULT_MAX_MEMBER_SIZE,
) -> VerifiedExport:
    """Check an export's signature, then decode its keys (a pure function of the bytes).

    A signature counts only if a configured key has its id and version and verifies it;
    signatures naming unknown keys are ignored. Raises :class:`ExportRefused` with
    ``invalid_signature`` (none verified, no export.sig, an empty one), ``bad_export`` or
    ``too_large``.
    """
    try:
        members = read_export_members(data, max_member_size=max_member_size)
        signatures = (
            parse_signature_list(members.export_sig) if members.export_sig is not None else ()
        )
    except ExportFormatError as error:
        raise _refuse_format(error) from None
    if not members.export_bin.startswith(EXPORT_HEADER):
        # Not an export at all: say so, rather than that it is unsigned.
        raise ExportRefused(ClientErrorCode.BAD_EXPORT, "export.bin has no 'EK Export v1' header")
    by_id = {(key.key_id, key.key_version): key for key in signing_keys}
    signed_by: ExportSigningKey | None = None
    for signature in signatures:
        info = signature.signature_info
        if info is None:
            continue
        key = by_id.get((info.verification_key_id or "", info.verification_key_version or ""))
        if key is None:
            continue
        try:
            verify_signature(key.public_key, members.export_bin, signature.signature)
        except InvalidSignature:
            continue
        signed_by = key
        break
    if signed_by is None:
        raise ExportRefused(
            ClientErrorCode.INVALID_SIGNATURE, "no signature verifies with a configured key"
        )
    return VerifiedExport(_parse(members.export_bin), signed_by)


def decode_export_keys(export_bin: bytes) -> tuple[list[DiagnosisKey], list[DiagnosisKey], int]:
    """The keys, revised keys and number of invalid entries of an export.bin.

    This does not check any signature: use :func:`open_export` for files from a network.
    Raises :class:`ExportRefused` (``bad_export``) for a wrong header or a body that does
    not decode.
    """
    message = _parse(export_bin)
    keys, invalid_keys = _diagnosis_keys(message.keys)
    revised, invalid_revised = _diagnosis_keys(message.revised_keys)
    return keys, revised, invalid_keys + invalid_revised


def _parse(export_bin: bytes) -> export_pb2.TemporaryExposureKeyExport:
    if not export_bin.startswith(EXPORT_HEADER):
        raise ExportRefused(ClientErrorCode.BAD_EXPORT, "export.bin has no 'EK Export v1' header")
    message = export_pb2.TemporaryExposureKeyExport()
    try:
        message.ParseFromString(export_bin[len(EXPORT_HEADER) :])
    except (DecodeError, ValueError, RecursionError):
        raise ExportRefused(ClientErrorCode.BAD_EXPORT, "export.bin does not decode") from None
    return message


def _is_usable(key_data: bytes, period: int) -> bool:
    return len(key_data) == KEY_LENGTH and 1 <= period <= MAX_INTERVAL_COUNT


def _diagnosis_key(entry: export_pb2.TemporaryExposureKey) -> DiagnosisKey | None:
    """One entry as a :class:`DiagnosisKey`, or None if no phone could have sent it."""
    key_data = entry.key_data
    period = entry.rolling_period  # 144 when absent: the proto default
    if not _is_usable(key_data, period):
        return None
    # proto2 enums are closed: an unknown report type number reads as absent.
    report_type = _REPORT_TYPES.get(entry.report_type, ReportType.UNKNOWN)
    onset = (
        entry.days_since_onset_of_symptoms
        if entry.HasField("days_since_onset_of_symptoms")
        else None
    )
    return DiagnosisKey(key_data, entry.rolling_start_interval_number, period, report_type, onset)


def _diagnosis_keys(
    entries: Iterable[export_pb2.TemporaryExposureKey],
) -> tuple[list[DiagnosisKey], int]:
    keys: list[DiagnosisKey] = []
    invalid = 0
    for entry in entries:
        key = _diagnosis_key(entry)
        if key is None:
            invalid += 1
        else:
            keys.append(key)
    return keys, invalid


@dataclass(frozen=True, slots=True)
class MatchedKey:
    """A published key this phone heard, as the sync keeps it.

    ``revised`` says it came from a file's ``revised_keys``: a revision always wins over the
    original entry, whichever arrived first.
    """

    key: DiagnosisKey
    revised: bool

    def to_json(self) -> dict[str, Any]:
        key = self.key
        return {
            "key": base64.b64encode(key.key_data).decode("ascii"),
            "rollingStartIntervalNumber": key.rolling_start_interval_number,
            "rollingPeriod": key.rolling_period,
            "reportType": int(key.report_type),
            "daysSinceOnsetOfSymptoms": key.days_since_onset_of_symptoms,
            "revised": self.revised,
        }

    @classmethod
    def from_json(cls, data: Any) -> MatchedKey:
        """Raises :class:`ValueError`, :class:`KeyError` or :class:`TypeError` if malformed."""
        onset = data["daysSinceOnsetOfSymptoms"]
        key = DiagnosisKey(
            base64.b64decode(data["key"], validate=True),
            int(data["rollingStartIntervalNumber"]),
            int(data["rollingPeriod"]),
            ReportType(int(data["reportType"])),
            None if onset is None else int(onset),
        )
        return cls(key=key, revised=bool(data["revised"]))


class SyncState:
    """What a phone remembers between syncs: the files processed and the keys it heard.

    :meth:`load` and :meth:`save` keep it in a small JSON file, written whole and renamed
    into place, so a crash leaves either the old state or the new one.
    """

    def __init__(
        self, *, processed: Iterable[str] = (), matched: Iterable[MatchedKey] = ()
    ) -> None:
        self.processed: set[str] = set(processed)
        self._matched: dict[bytes, MatchedKey] = {}
        for entry in matched:
            self.record(entry.key, revised=entry.revised)

    @property
    def matched_keys(self) -> list[DiagnosisKey]:
        """The keys heard, each with its winning report type, in the order first matched."""
        return [entry.key for entry in self._matched.values()]

    @property
    def matched(self) -> list[MatchedKey]:
        return list(self._matched.values())

    def record(self, key: DiagnosisKey, *, revised: bool) -> None:
        """Keep a matched key; a revised entry replaces an original, never the reverse."""
        existing = self._matched.get(key.key_data)
        if existing is not None and existing.revised and not revised:
            return
        self._matched[key.key_data] = MatchedKey(key=key, revised=revised)

    def forget(self, *, files_not_in: Iterable[str], keys_ended_before: datetime) -> None:
        """Drop processed names the index no longer lists, and keys past retention."""
        self.processed &= set(files_not_in)
        limit = interval_number(keys_ended_before)
        self._matched = {
            data: entry
            for data, entry in self._matched.items()
            if entry.key.rolling_start_interval_number + entry.key.rolling_period > limit
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "processed": sorted(self.processed),
            "matched": [entry.to_json() for entry in self._matched.values()],
        }

    @classmethod
    def load(cls, path: Path) -> SyncState:
        """The state saved at ``path``, or an empty one if there is no file yet.

        Raises :class:`StateUnreadable` for a file that is not a state this SDK wrote.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as error:
            raise StateUnreadable(f"cannot read {path.name} ({type(error).__name__})") from None
        try:
            data = json.loads(text)
            if data.get("format") != _STATE_FORMAT:
                raise ValueError("unknown format")
            processed = [str(name) for name in data["processed"]]
            matched = [MatchedKey.from_json(entry) for entry in data["matched"]]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise StateUnreadable(f"{path.name} is not a sync state") from None
        return cls(processed=processed, matched=matched)

    def save(self, path: Path) -> None:
        """Write the state to ``path`` atomically (a temporary file renamed over it)."""
        payload = json.dumps(self.to_json(), separators=(",", ":")).encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


@dataclass(frozen=True, slots=True)
class FileRefusal:
    """A file a sync refused: its name in index.txt, a stable code, a message."""

    name: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one sync did: files processed now, files refused, keys checked and matched."""

    processed: tuple[str, ...]
    refused: tuple[FileRefusal, ...]
    keys_checked: int
    keys_matched: int
    invalid_keys: int


class ExportSync:
    """Brings a phone's :class:`SyncState` up to date with a key server's exports.

    ``state_path``, when given, is where the state is saved after every processed file.
    ``http`` is the client to use (one with timeouts is made, and closed by :meth:`close`,
    when none is given).
    """

    def __init__(
        self,
        source: ExportSource,
        state: SyncState,
        *,
        state_path: Path | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        if not source.signing_keys:
            raise ValueError("an export source needs at least one signing key")
        self.source = source
        self.state = state
        self._state_path = state_path
        self._owns_http = http is None
        self._http = http if http is not None else new_http_client(source.timeout)

    def __enter__(self) -> ExportSync:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if the sync made it."""
        if self._owns_http:
            self._http.close()

    def run(self, matcher: KeyMatcher, *, now: datetime) -> SyncReport:
        """Download, verify and match every file index.txt lists that is not processed yet.

        Raises :class:`IndexUnavailable` when index.txt cannot be read (nothing changes
        then). Refused files are reported, not raised.
        """
        names = self.fetch_index()
        self.state.forget(files_not_in=names, keys_ended_before=now - KEY_RETENTION)
        processed: list[str] = []
        refused: list[FileRefusal] = []
        checked = matched = invalid = 0
        for name in names:
            if name in self.state.processed:
                continue
            try:
                export = open_export(
                    self._download(name),
                    self.source.signing_keys,
                    max_member_size=self.source.max_file_size,
                )
            except ExportRefused as error:
                refused.append(FileRefusal(name=name, code=error.code, message=error.message))
                continue
            found = export.match(matcher)
            for key, revised in found:
                self.state.record(key, revised=revised)
            self.state.processed.add(name)
            self._save()
            processed.append(name)
            checked += len(export)
            # A key and its revision in one file are one key heard.
            matched += len({key.key_data for key, _ in found})
            invalid += export.invalid_keys
        self._save()
        return SyncReport(
            processed=tuple(processed),
            refused=tuple(refused),
            keys_checked=checked,
            keys_matched=matched,
            invalid_keys=invalid,
        )

    def fetch_index(self) -> list[str]:
        """The names index.txt lists, in its order (blank lines skipped).

        Raises :class:`IndexUnavailable` for no answer, a status other than 200, or a body
        that is not UTF-8 text.
        """
        try:
            response = self._http.get(self.source.url(self.source.index_path))
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise IndexUnavailable(f"index.txt: no answer ({type(error).__name__})") from None
        if response.status_code != 200:
            raise IndexUnavailable(
                f"index.txt: HTTP {response.status_code}", status=response.status_code
            )
        try:
            text = response.content.decode("utf-8")
        except UnicodeDecodeError:
            raise IndexUnavailable("index.txt is not text", status=response.status_code) from None
        return [line.strip() for line in text.splitlines() if line.strip()]

    def download(self, name: str) -> bytes:
        """The bytes of export file ``name`` as index.txt lists it, unverified (size-capped).

        :meth:`run` verifies what it downloads; a caller of this method passes the bytes to
        :func:`open_export` before trusting any of them. Raises :class:`ExportRefused`
        (``bad_index_entry``, ``missing_file``, ``download_failed``, ``too_large``).
        """
        return self._download(name)

    def _download(self, name: str) -> bytes:
        if _INDEX_ENTRY.fullmatch(name) is None or ".." in name.split("/"):
            raise ExportRefused(
                ClientErrorCode.BAD_INDEX_ENTRY, "not a relative file name", name=name
            )
        limit = self.source.max_file_size
        try:
            with self._http.stream("GET", self.source.url(name)) as response:
                if response.status_code == 404:
                    raise ExportRefused(
                        ClientErrorCode.MISSING_FILE,
                        "listed in index.txt but not found",
                        name=name,
                        status=404,
                    )
                if response.status_code != 200:
                    raise ExportRefused(
                        ClientErrorCode.DOWNLOAD_FAILED,
                        f"HTTP {response.status_code}",
                        name=name,
                        status=response.status_code,
                    )
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise ExportRefused(
                            ClientErrorCode.TOO_LARGE, f"over the {limit}-byte limit", name=name
                        )
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise ExportRefused(
                ClientErrorCode.DOWNLOAD_FAILED, f"no answer ({type(error).__name__})", name=name
            ) from None
        return bytes(data)

    def _save(self) -> None:
        if self._state_path is not None:
            self.state.save(self._state_path)
