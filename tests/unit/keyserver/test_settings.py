"""Key server settings: defaults of the reference, and the floors and ceilings of ours."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from keyserver.settings import KeyserverSettings


def test_certificates_live_at_most_an_hour_by_default() -> None:
    assert KeyserverSettings().certificate_max_lifetime == timedelta(hours=1)


@pytest.mark.parametrize("lifetime", [timedelta(minutes=20), timedelta(days=1)])
def test_the_certificate_lifetime_may_be_set_between_its_floor_and_ceiling(
    lifetime: timedelta,
) -> None:
    assert KeyserverSettings(certificate_max_lifetime=lifetime).certificate_max_lifetime == lifetime


@pytest.mark.parametrize(
    "lifetime",
    [
        # Below the floor the verification service's own 15-minute certificates would fail.
        timedelta(minutes=15),
        timedelta(0),
        # Above the ceiling the check would no longer bound anything a phone needs.
        timedelta(days=1, seconds=1),
        timedelta(days=365),
    ],
)
def test_a_certificate_lifetime_outside_its_bounds_is_refused(lifetime: timedelta) -> None:
    with pytest.raises(ValidationError, match="certificate_max_lifetime"):
        KeyserverSettings(certificate_max_lifetime=lifetime)


def test_the_certificate_lifetime_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPOSURE_KEYSERVER_CERTIFICATE_MAX_LIFETIME", "PT30M")

    assert KeyserverSettings().certificate_max_lifetime == timedelta(minutes=30)


def test_production_timing_is_the_default_and_its_floors_stand() -> None:
    settings = KeyserverSettings()
    assert settings.throwaway_demo_timing is False
    assert settings.created_at_window == settings.truncate_window == timedelta(hours=1)
    assert settings.window_close_delay == settings.export_min_window_age == timedelta(hours=2)
    # The demo timing is a switch of its own: the production settings still refuse
    # second-scale values, with or without it.
    for name, value in (
        ("truncate_window", timedelta(seconds=1)),
        ("export_min_window_age", timedelta(seconds=2)),
    ):
        with pytest.raises(ValidationError, match=name):
            KeyserverSettings(**{name: value})
        with pytest.raises(ValidationError, match=name):
            KeyserverSettings(**{name: value, "throwaway_demo_timing": True})


def test_throwaway_demo_timing_works_in_seconds() -> None:
    settings = KeyserverSettings(throwaway_demo_timing=True)
    assert settings.created_at_window == timedelta(seconds=1)
    assert settings.window_close_delay == timedelta(seconds=2)
