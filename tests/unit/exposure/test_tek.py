"""Report types: each stored diagnosis has one export report type (google-keyserver.md §4.3)."""

from __future__ import annotations

from exposure.export import ReportType as ExportReportType
from exposure.tek import ReportType


def test_every_diagnosis_is_written_as_the_reference_does() -> None:
    assert {report_type.value: report_type.export_type for report_type in ReportType} == {
        "confirmed": ExportReportType.CONFIRMED_TEST,
        "likely": ExportReportType.CONFIRMED_CLINICAL_DIAGNOSIS,
        "negative": ExportReportType.REVOKED,
        "user-report": ExportReportType.SELF_REPORT,
    }
