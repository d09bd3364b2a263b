"""``/docs`` in a real browser: Swagger UI renders the OpenAPI document of a real
``exposure serve``, from assets the server itself serves (nothing from anywhere else)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from tests.browser import browser_page
from tests.e2e.conftest import RunningServer


def test_docs_renders_every_service_s_operations_from_local_assets(
    server: RunningServer, tmp_path: Path
) -> None:
    requested: list[str] = []
    errors: list[str] = []
    with browser_page() as page:
        page.on("request", lambda request: requested.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: errors.append(message.text) if message.type == "error" else None,
        )
        page.goto(f"{server.base_url}/docs")
        issue = page.locator(".opblock", has_text="/api/issue").first
        issue.wait_for(timeout=30_000)
        publish = page.locator(".opblock", has_text="/v1/publish").first
        publish.wait_for(timeout=5_000)
        # Opening an operation shows what it takes: the request body's schema.
        publish.locator(".opblock-summary").click()
        page.get_by_text("temporaryExposureKeys").first.wait_for(timeout=5_000)
        title = page.locator(".information-container .title").inner_text()
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)

    assert "exposure" in title
    assert errors == []
    hosts = {urlsplit(url).netloc for url in requested if not url.startswith("data:")}
    assert hosts == {urlsplit(server.base_url).netloc}, hosts
