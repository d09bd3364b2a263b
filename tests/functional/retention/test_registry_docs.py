"""docs/privacy.md carries the registry exactly as the code declares it."""

from __future__ import annotations

from pathlib import Path

from exposure.cli.audit import registry_markdown, registry_rows
from tests.functional.retention.conftest import World

PRIVACY = Path(__file__).resolve().parents[3] / "docs" / "privacy.md"
START, END = "<!-- registry:start -->\n", "\n<!-- registry:end -->"


def registry_table(world: World) -> str:
    policies = [*world.keyserver_retention.policies, *world.verification_retention.policies]
    return registry_markdown(registry_rows(policies))


def test_the_privacy_doc_shows_the_registry_the_code_declares(world: World) -> None:
    text = PRIVACY.read_text(encoding="utf-8")
    documented = text[text.index(START) + len(START) : text.index(END)]

    assert documented == registry_table(world), (
        "docs/privacy.md's registry is stale: paste `exposure audit registry` between the markers"
    )
