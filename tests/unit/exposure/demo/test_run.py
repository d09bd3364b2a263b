"""The demo's own rules: its verdict, its risk numbers, and the server timing it waits for."""

from __future__ import annotations

import pytest

from exposure.client import ReportType
from exposure.demo import run
from exposure.demo.run import DemoReport, demo_risk
from keyserver.settings import DEMO_CLOSE_DELAY, KeyserverSettings


def test_the_demo_waits_for_the_delay_the_server_applies() -> None:
    assert run._CLOSE_DELAY == DEMO_CLOSE_DELAY
    assert KeyserverSettings(throwaway_demo_timing=True).window_close_delay == run._CLOSE_DELAY


def test_the_ground_truth_weighs_as_the_phones_model_does() -> None:
    model, rule = demo_risk()
    for attenuation in range(256):
        assert rule.attenuation_weight(attenuation) == model.attenuation_weight(attenuation)
    for day in range(-14, 15):
        level = model.infectiousness(day)
        expected = model.infectiousness_weights.get(level)
        assert rule.infectiousness_weight.get(day) == expected
    assert rule.report_weight == model.report_type_weights[ReportType.CONFIRMED_TEST]
    assert model.minimum_window_score == 0  # every window counts, as the ground truth's do


def report(**overrides: int) -> DemoReport:
    fields = {
        "phones": 10,
        "positives": 1,
        "exposure_windows_found": 4,
        "exposure_windows_expected": 4,
        "notified_phones_found": 2,
        "notified_phones_expected": 2,
    }
    fields.update(overrides)
    return DemoReport(**fields)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exposure_windows_found": 3},
        {"notified_phones_found": 3},
        {"false_notifications": 1},
        {"notified_phones_mismatched": 2},
        {"refused_files": 1},
    ],
)
def test_any_difference_fails_the_demo(overrides: dict[str, int]) -> None:
    assert report().ok
    assert not report(**overrides).ok
    assert report(**overrides).to_json()["ok"] is False
