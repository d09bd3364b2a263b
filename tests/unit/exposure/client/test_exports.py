from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from crypto.signing import FileSigner
from exposure.client import (
    ClientErrorCode,
    DiagnosisKey,
    ExportRefused,
    ExportSigningKey,
    ExportSource,
    ExportSync,
    IndexUnavailable,
    MatchedKey,
    ReportType,
    SightingIndex,
    StateUnreadable,
    SyncState,
    decode_export_keys,
    open_export,
)
from exposure.export import (
    ExportContents,
    ExportKey,
    SignatureInfo,
    build_export,
    encode_export_bin,
    write_export_zip,
)
from tests.interop import interop_path
from tests.unit.exposure.client.support import (
    MORNING,
    SIGNATURE_INFO,
    seeded,
    signed_export,
    signing_key,
)
from tests.unit.exposure.client.test_matching import at_interval, rpi_of, sighting

START = 2_993_040
KEYS = [
    DiagnosisKey(seeded(n)(16), START - 144 * n, 144, ReportType.CONFIRMED_TEST, -n)
    for n in range(5)
]


class TestOpenExport:
    def test_the_keys_of_a_verified_file_come_out_whole(self, signer: FileSigner) -> None:
        revised = [
            KEYS[0]._replace(report_type=ReportType.REVOKED, days_since_onset_of_symptoms=None)
        ]

        export = open_export(signed_export(signer, KEYS, revised), [signing_key(signer)])

        assert sorted(export.keys) == sorted(KEYS)
        assert export.revised_keys == revised
        assert export.signed_by == signing_key(signer)
        assert export.region == "VN"
        assert export.invalid_keys == 0

    def test_matching_returns_what_was_heard_and_whether_it_is_a_revision(
        self, signer: FileSigner
    ) -> None:
        revoked = KEYS[3]._replace(report_type=ReportType.REVOKED)
        export = open_export(signed_export(signer, KEYS, [revoked]), [signing_key(signer)])
        heard = SightingIndex([sighting(rpi_of(KEYS[3], 7), at_interval(KEYS[3][1] + 7))])

        found = export.match(heard)

        assert sorted(found) == sorted([(KEYS[3], False), (revoked, True)])
        assert len(export) == 6

    def test_the_signing_key_is_chosen_by_id_and_version(
        self, signer: FileSigner, other_signer: FileSigner
    ) -> None:
        data = signed_export(signer, KEYS)
        wrong_first = [signing_key(other_signer, "310", "v2"), signing_key(signer, "310", "v1")]

        assert open_export(data, wrong_first).signed_by.key_version == "v1"
        with pytest.raises(ExportRefused) as refused:
            open_export(data, [signing_key(signer, "311", "v1")])
        assert refused.value.code == ClientErrorCode.INVALID_SIGNATURE

    def test_a_signature_by_another_key_is_refused(
        self, signer: FileSigner, other_signer: FileSigner
    ) -> None:
        with pytest.raises(ExportRefused) as refused:
            open_export(signed_export(signer, KEYS), [signing_key(other_signer)])

        assert refused.value.code == ClientErrorCode.INVALID_SIGNATURE

    def test_a_modified_export_bin_is_refused(self, signer: FileSigner) -> None:
        good = open_export_members(signed_export(signer, KEYS))
        tampered_bin = good[0][:-1] + bytes([good[0][-1] ^ 1])

        with pytest.raises(ExportRefused) as refused:
            open_export(write_export_zip(tampered_bin, good[1]), [signing_key(signer)])

        assert refused.value.code == ClientErrorCode.INVALID_SIGNATURE

    @pytest.mark.parametrize("export_sig", [None, b""])
    def test_an_unsigned_file_is_refused(
        self, signer: FileSigner, export_sig: bytes | None
    ) -> None:
        export_bin = open_export_members(signed_export(signer, KEYS))[0]

        with pytest.raises(ExportRefused) as refused:
            open_export(write_export_zip(export_bin, export_sig), [signing_key(signer)])

        assert refused.value.code == ClientErrorCode.INVALID_SIGNATURE

    @pytest.mark.parametrize("data", [b"not a zip", b"PK\x03\x04broken"])
    def test_a_malformed_file_is_refused(self, signer: FileSigner, data: bytes) -> None:
        with pytest.raises(ExportRefused) as refused:
            open_export(data, [signing_key(signer)])

        assert refused.value.code == ClientErrorCode.BAD_EXPORT

    def test_a_file_over_the_limit_is_refused(self, signer: FileSigner) -> None:
        data = signed_export(signer, KEYS)

        with pytest.raises(ExportRefused) as refused:
            open_export(data, [signing_key(signer)], max_member_size=100)

        assert refused.value.code == ClientErrorCode.TOO_LARGE

    def test_keys_no_phone_could_have_sent_are_counted_and_dropped(self) -> None:
        contents = ExportContents(
            start_timestamp=1,
            end_timestamp=2,
            region="VN",
            signature_infos=(SIGNATURE_INFO,),
            keys=(
                ExportKey(key_data=bytes(15)),
                ExportKey(key_data=bytes(16), rolling_period=0),
                ExportKey(key_data=bytes(range(16)), rolling_start_interval_number=START),
            ),
        )
        export_bin = encode_export_bin(contents, require_key_length=False)

        keys, revised, invalid = decode_export_keys(export_bin)

        assert keys == [DiagnosisKey(bytes(range(16)), START, 144, ReportType.UNKNOWN, None)]
        assert (revised, invalid) == ([], 2)

    def test_a_body_without_the_header_is_refused(self) -> None:
        with pytest.raises(ExportRefused) as refused:
            decode_export_keys(b"EK Export v2    ")

        assert refused.value.code == ClientErrorCode.BAD_EXPORT


def open_export_members(data: bytes) -> tuple[bytes, bytes]:
    from exposure.export import read_export_members

    members = read_export_members(data)
    assert members.export_sig is not None
    return members.export_bin, members.export_sig


@pytest.mark.interop
class TestRealFiles:
    def key(self, name: str, key_id: str, version: str) -> ExportSigningKey:
        return ExportSigningKey.from_pem(key_id, version, interop_path(f"keys/{name}").read_bytes())

    def read(self, name: str) -> bytes:
        return interop_path(f"exports/{name}").read_bytes()

    def test_google_s_sample_verifies_with_the_310_v1_key(self) -> None:
        signed_by = self.key("google_exposure-notifications-internals__310-v1.pem", "310", "v1")

        export = open_export(
            self.read(
                "google_exposure-notifications-internals__app_raw__sample_diagnosis_key_file.zip"
            ),
            [signed_by],
        )

        assert len(export.keys) == 140
        assert export.signed_by == signed_by

    def test_a_signature_without_key_id_matches_a_key_configured_without_one(self) -> None:
        signed_by = self.key(
            "google_exposure-notifications-internals__ExampleServer-v1.pem", "", "v1"
        )

        export = open_export(
            self.read(
                "google_exposure-notifications-android__network_raw__"
                "sample_diagnosis_key_file-174cf0da.zip"
            ),
            [signed_by],
        )

        assert len(export.keys) == 110

    def test_the_corona_warn_app_file_does_not_verify_with_the_published_key(self) -> None:
        published = self.key("corona-warn-app_cwa-app-android__262-v1_prod.pem", "262", "v1")

        with pytest.raises(ExportRefused) as refused:
            open_export(
                self.read("corona-warn-app_cwa-app-android__test_resources__keys.zip"), [published]
            )

        assert refused.value.code == ClientErrorCode.INVALID_SIGNATURE

    def test_a_file_of_53_byte_keys_verifies_but_holds_no_usable_key(self) -> None:
        signed_by = self.key(
            "minvws_nl-covid19-notification-app-backend__TestECDSA_p12_public.pem", "204", "v1"
        )

        export = open_export(
            self.read(
                "minvws_nl-covid19-notification-app-backend__tests_unit_"
                "EksEngine.Tests_Resources__ProtobufHeaderTestFile.zip"
            ),
            [signed_by],
        )

        assert (export.keys, export.invalid_keys) == ([], 1)


class TestSyncState:
    PRIMARY = KEYS[1]._replace(report_type=ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    REVISED = KEYS[1]._replace(report_type=ReportType.CONFIRMED_TEST)

    @pytest.mark.parametrize("revision_first", [False, True])
    def test_a_revision_wins_whichever_file_came_first(self, revision_first: bool) -> None:
        state = SyncState()
        entries = [(self.PRIMARY, False), (self.REVISED, True)]
        for key, revised in reversed(entries) if revision_first else entries:
            state.record(key, revised=revised)

        assert state.matched_keys == [self.REVISED]

    def test_a_later_revision_replaces_an_earlier_one(self) -> None:
        state = SyncState()
        state.record(self.REVISED, revised=True)
        revoked = self.REVISED._replace(report_type=ReportType.REVOKED)

        state.record(revoked, revised=True)

        assert state.matched_keys == [revoked]

    def test_it_survives_a_round_trip_through_its_file(self, tmp_path: Path) -> None:
        path = tmp_path / "phone" / "sync.json"
        state = SyncState(processed={"v1/1-2-00001.zip"})
        state.record(self.REVISED, revised=True)
        state.record(KEYS[2]._replace(days_since_onset_of_symptoms=None), revised=False)

        state.save(path)
        loaded = SyncState.load(path)

        assert loaded.processed == state.processed
        assert loaded.matched == state.matched
        assert [p.name for p in path.parent.iterdir()] == ["sync.json"]  # no temporary left

    def test_no_file_yet_is_an_empty_state(self, tmp_path: Path) -> None:
        state = SyncState.load(tmp_path / "absent.json")

        assert (state.processed, state.matched) == (set(), [])

    @pytest.mark.parametrize(
        "text",
        [
            "{",
            "[]",
            '{"format": "other"}',
            '{"format": "exposure.client.sync/1"}',
            '{"format": "exposure.client.sync/1", "processed": [], "matched": [{"key": "!"}]}',
        ],
    )
    def test_a_file_it_did_not_write_is_unreadable(self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "sync.json"
        path.write_text(text)

        with pytest.raises(StateUnreadable) as refused:
            SyncState.load(path)
        assert refused.value.code == ClientErrorCode.STATE_UNREADABLE

    def test_forgetting_follows_the_index_and_the_retention(self) -> None:
        state = SyncState(processed={"v1/a.zip", "v1/b.zip"})
        for key in KEYS:
            state.record(key, revised=False)

        state.forget(
            files_not_in=["v1/b.zip", "v1/c.zip"], keys_ended_before=at_interval(START - 144 * 2)
        )

        assert state.processed == {"v1/b.zip"}
        assert state.matched_keys == KEYS[:3]  # KEYS[3] ended at the cutoff

    def test_a_matched_key_refuses_malformed_json(self) -> None:
        with pytest.raises(KeyError):
            MatchedKey.from_json({"key": "AAAAAAAAAAAAAAAAAAAAAA=="})


# ---- a sync against a fake CDN ---------------------------------------------------------


class FakeCdn:
    """Serves files by path; records every request."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requested: list[str] = []
        self.status: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/exports/")
        self.requested.append(path)
        if path in self.status:
            return httpx.Response(self.status[path])
        if path not in self.files:
            return httpx.Response(404, json={"error": "not found"})
        return httpx.Response(200, content=self.files[path])


@pytest.fixture
def phone_index() -> SightingIndex:
    """A phone that heard KEYS[0] and KEYS[3]."""
    heard = [sighting(rpi_of(KEYS[n], 7), at_interval(KEYS[n][1] + 7)) for n in (3, 0)]
    return SightingIndex(heard)


def sync_with(
    cdn: FakeCdn, signer: FileSigner, state: SyncState, path: Path | None = None
) -> ExportSync:
    source = ExportSource(
        base_url="https://cdn.example/exports",
        index_path="v1/index.txt",
        signing_keys=(signing_key(signer),),
        max_file_size=64 * 1024,
    )
    http = httpx.Client(transport=httpx.MockTransport(cdn))
    return ExportSync(source, state, state_path=path, http=http)


Index = Callable[..., bytes]


def index_of(*names: str) -> bytes:
    return "\n".join(names).encode()


class TestSync:
    def test_new_files_are_verified_matched_and_remembered(
        self, signer: FileSigner, phone_index: SightingIndex, tmp_path: Path
    ) -> None:
        cdn = FakeCdn(
            {
                "v1/index.txt": index_of("v1/1-2-00001.zip", "v1/2-3-00001.zip"),
                "v1/1-2-00001.zip": signed_export(signer, KEYS[:2]),
                "v1/2-3-00001.zip": signed_export(signer, KEYS[2:]),
            }
        )
        path = tmp_path / "sync.json"

        report = sync_with(cdn, signer, SyncState(), path).run(phone_index, now=MORNING)

        assert report.processed == ("v1/1-2-00001.zip", "v1/2-3-00001.zip")
        assert (report.refused, report.keys_checked, report.keys_matched) == ((), 5, 2)
        saved = SyncState.load(path)
        assert sorted(saved.matched_keys) == sorted([KEYS[0], KEYS[3]])
        assert saved.processed == set(report.processed)

    def test_processed_files_are_not_downloaded_again(
        self, signer: FileSigner, phone_index: SightingIndex
    ) -> None:
        cdn = FakeCdn(
            {
                "v1/index.txt": index_of("v1/1-2-00001.zip"),
                "v1/1-2-00001.zip": signed_export(signer, KEYS),
            }
        )
        state = SyncState()
        sync_with(cdn, signer, state).run(phone_index, now=MORNING)
        cdn.requested.clear()

        report = sync_with(cdn, signer, state).run(phone_index, now=MORNING)

        assert cdn.requested == ["v1/index.txt"]
        assert report.processed == ()

    def test_refused_files_are_reported_and_the_others_processed(
        self,
        signer: FileSigner,
        other_signer: FileSigner,
        phone_index: SightingIndex,
        tmp_path: Path,
    ) -> None:
        cdn = FakeCdn(
            {
                "v1/index.txt": index_of(
                    "v1/1-2-00001.zip",
                    "v1/2-3-00001.zip",
                    "v1/3-4-00001.zip",
                    "../secrets.zip",
                    "v1/4-5-00001.zip",
                    "v1/5-6-00001.zip",
                    "v1/6-7-00001.zip",
                ),
                "v1/1-2-00001.zip": signed_export(signer, KEYS[:1]),
                "v1/2-3-00001.zip": signed_export(other_signer, KEYS[3:4]),
                # 3-4 is listed but missing
                "v1/4-5-00001.zip": b"garbage",
                "v1/5-6-00001.zip": bytes(70 * 1024),
                "v1/6-7-00001.zip": signed_export(signer, KEYS[3:4]),
            }
        )
        cdn.status["v1/5-6-00001.zip"] = 503
        path = tmp_path / "sync.json"

        report = sync_with(cdn, signer, SyncState(), path).run(phone_index, now=MORNING)

        assert report.processed == ("v1/1-2-00001.zip", "v1/6-7-00001.zip")
        assert [(r.name, r.code) for r in report.refused] == [
            ("v1/2-3-00001.zip", "invalid_signature"),
            ("v1/3-4-00001.zip", "missing_file"),
            ("../secrets.zip", "bad_index_entry"),
            ("v1/4-5-00001.zip", "bad_export"),
            ("v1/5-6-00001.zip", "download_failed"),
        ]
        assert "../secrets.zip" not in cdn.requested
        assert SyncState.load(path).processed == set(report.processed)

    def test_a_later_sync_that_refuses_files_keeps_what_earlier_syncs_processed(
        self,
        signer: FileSigner,
        other_signer: FileSigner,
        phone_index: SightingIndex,
        tmp_path: Path,
    ) -> None:
        path = tmp_path / "sync.json"
        first = FakeCdn(
            {
                "v1/index.txt": index_of("v1/1-2-00001.zip"),
                "v1/1-2-00001.zip": signed_export(signer, KEYS[:1]),
            }
        )
        sync_with(first, signer, SyncState(), path).run(phone_index, now=MORNING)
        # The next index lists the processed file, a forged one and one the CDN lost.
        later = FakeCdn(
            {
                "v1/index.txt": index_of(
                    "v1/1-2-00001.zip", "v1/2-3-00001.zip", "v1/3-4-00001.zip"
                ),
                "v1/2-3-00001.zip": signed_export(other_signer, KEYS[3:4]),
            }
        )

        report = sync_with(later, signer, SyncState.load(path), path).run(phone_index, now=MORNING)

        assert report.processed == ()
        assert [(r.name, r.code) for r in report.refused] == [
            ("v1/2-3-00001.zip", "invalid_signature"),
            ("v1/3-4-00001.zip", "missing_file"),
        ]
        assert "v1/1-2-00001.zip" not in later.requested
        saved = SyncState.load(path)
        assert saved.processed == {"v1/1-2-00001.zip"}
        assert saved.matched_keys == [KEYS[0]]

    def test_a_file_over_the_limit_is_not_read_to_the_end(
        self, signer: FileSigner, phone_index: SightingIndex
    ) -> None:
        cdn = FakeCdn(
            {"v1/index.txt": index_of("v1/1-2-00001.zip"), "v1/1-2-00001.zip": bytes(65 * 1024)}
        )

        report = sync_with(cdn, signer, SyncState()).run(phone_index, now=MORNING)

        assert [r.code for r in report.refused] == ["too_large"]

    @pytest.mark.parametrize(("status", "body"), [(404, b""), (500, b""), (200, b"\xff\xfe")])
    def test_an_unreadable_index_changes_nothing(
        self, signer: FileSigner, phone_index: SightingIndex, status: int, body: bytes
    ) -> None:
        cdn = FakeCdn({"v1/index.txt": body})
        cdn.status = {"v1/index.txt": status} if status != 200 else {}
        state = SyncState(processed={"v1/0-1-00001.zip"})

        with pytest.raises(IndexUnavailable) as refused:
            sync_with(cdn, signer, state).run(phone_index, now=MORNING)

        assert refused.value.code == ClientErrorCode.INDEX_UNAVAILABLE
        assert state.processed == {"v1/0-1-00001.zip"}

    def test_no_answer_from_the_cdn_is_an_unavailable_index(
        self, signer: FileSigner, phone_index: SightingIndex
    ) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        source = ExportSource("https://cdn.example", "v1/index.txt", (signing_key(signer),))
        sync = ExportSync(
            source, SyncState(), http=httpx.Client(transport=httpx.MockTransport(refuse))
        )

        with pytest.raises(IndexUnavailable, match="ConnectError"):
            sync.run(phone_index, now=MORNING)

    def test_blank_lines_and_a_trailing_newline_are_ignored(self, signer: FileSigner) -> None:
        cdn = FakeCdn({"v1/index.txt": b"v1/1-2-00001.zip\n\n v1/2-3-00001.zip \n"})

        assert sync_with(cdn, signer, SyncState()).fetch_index() == [
            "v1/1-2-00001.zip",
            "v1/2-3-00001.zip",
        ]

    def test_a_source_needs_a_key(self) -> None:
        with pytest.raises(ValueError, match="signing key"):
            ExportSync(ExportSource("https://cdn.example", "i.txt", ()), SyncState())


def test_a_pem_that_is_no_p256_key_is_refused() -> None:
    with pytest.raises(ValueError, match="P-256"):
        ExportSigningKey.from_pem(
            "310", "v1", b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"
        )


def test_signature_info_without_id_or_version_reads_as_empty(signer: FileSigner) -> None:
    info = SignatureInfo(verification_key_id=None, verification_key_version=None)
    contents = ExportContents(
        start_timestamp=1, end_timestamp=2, region="VN", signature_infos=(info,)
    )

    export = open_export(build_export(contents, [(info, signer)]), [signing_key(signer, "", "")])

    assert export.keys == []
    assert json.dumps(SyncState().to_json())  # the empty state is plain JSON
