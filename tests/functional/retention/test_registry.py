"""Every table is declared in the retention registry, and the declarations hold together."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from exposure.retention.policy import (
    Action,
    Deadline,
    RetentionPolicy,
    tables_without_declaration,
)
from exposure.retention.settings import RetentionSettings
from exposure.settings import Service
from tests.functional.retention.conftest import World, build_world


def _all_policies(world: World) -> list[RetentionPolicy]:
    return [*world.keyserver_retention.policies, *world.verification_retention.policies]


def test_every_table_in_the_schema_has_a_declaration(world: World, engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"keyserver_exposures", "verification_codes", "alembic_version"} <= tables

    assert tables_without_declaration(tables, _all_policies(world)) == set()


def test_the_check_finds_an_undeclared_table(world: World) -> None:
    assert tables_without_declaration(
        ["keyserver_exposures", "shadow_copy"], _all_policies(world)
    ) == {"shadow_copy"}


def test_each_services_policies_name_only_its_own_and_core_tables(world: World) -> None:
    core = {
        "leases",
        "rate_limit_windows",
        "retention_log",
        "retention_checkpoints",
        "sealed_keys",
        "auditor_keys",
        "alembic_version",
    }
    for retention, prefix in (
        (world.keyserver_retention, "keyserver_"),
        (world.verification_retention, "verification_"),
    ):
        for policy in retention.policies:
            assert policy.service == retention.service
            assert all(table.startswith(prefix) or table in core for table in policy.tables)


def test_kinds_are_unique_per_service_and_every_deadline_kind_is_enforced(world: World) -> None:
    for retention in (world.keyserver_retention, world.verification_retention):
        kinds = [policy.kind for policy in retention.policies]
        assert len(kinds) == len(set(kinds))
        for policy in retention.policies:
            assert policy.purpose
            assert policy.enforced_by
            if policy.action is Action.KEEP:
                assert policy.deadline is None
            else:
                assert policy.deadline is not None
                assert policy.bounds is not None
                assert policy.setting
                assert policy.setting.startswith("EXPOSURE_")


def test_issue_deadlines_are_the_defaults(world: World) -> None:
    by_kind = {(policy.service, policy.kind): policy for policy in _all_policies(world)}
    days = timedelta(days=1)
    expected = {
        (Service.KEYSERVER, "exposure-keys"): (14 * days, 10 * days, 21 * days),
        (Service.KEYSERVER, "export-files"): (14 * days, 10 * days, 21 * days),
        (Service.VERIFICATION, "verification-code-values"): (timedelta(hours=48), None, None),
        (Service.VERIFICATION, "verification-codes"): (14 * days, None, None),
        (Service.VERIFICATION, "verification-tokens"): (timedelta(hours=24), None, None),
        (Service.KEYSERVER, "retention-log"): (365 * days, None, None),
    }
    for key, (default, floor, ceiling) in expected.items():
        policy = by_kind[key]
        assert policy.deadline == default, key
        assert policy.bounds is not None
        if floor is not None:
            assert (policy.bounds.floor, policy.bounds.ceiling) == (floor, ceiling)


def test_settings_move_deadlines_within_bounds(database_url: str, tmp_path: Path) -> None:
    world = build_world(database_url, tmp_path, RetentionSettings(exposure_keys=timedelta(days=10)))
    world.close()
    policy = next(p for p in world.keyserver_retention.policies if p.kind == "exposure-keys")

    assert policy.deadline == timedelta(days=10)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exposure_keys", timedelta(days=9)),
        ("exposure_keys", timedelta(days=22)),
        ("codes", timedelta(hours=12)),
        ("tokens", timedelta(minutes=30)),
        ("log", timedelta(days=30)),
        ("purge_interval", timedelta(minutes=1)),
    ],
)
def test_settings_refuse_deadlines_past_their_floor_or_ceiling(
    field: str, value: timedelta
) -> None:
    with pytest.raises(ValueError, match=field):
        RetentionSettings(**{field: value})


def test_codes_must_outlive_their_blanked_values() -> None:
    with pytest.raises(ValueError, match="at least as long"):
        RetentionSettings(code_values=timedelta(days=3), codes=timedelta(days=2))


def test_a_deadline_outside_its_bounds_is_refused() -> None:
    with pytest.raises(ValueError, match="between its floor and ceiling"):
        Deadline(default=timedelta(days=1), floor=timedelta(days=2), ceiling=timedelta(days=3))
