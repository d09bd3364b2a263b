"""``GET /docs``: Swagger UI over the app's OpenAPI document, from assets served here.

Nothing is loaded from a CDN: the servers have no internet access, and an operator's
browser should not tell a third party which API it reads. The JavaScript, CSS and icon
of Swagger UI come from the ``fastapi-offline`` package (docs/dependencies.md says why
that one) and are served under ``/docs/``; the page's Content-Security-Policy lets the
browser fetch nothing from anywhere else.

The page is public, as ``/openapi.json`` is: it describes the API of open-source software
and holds no data and no secret (docs/api.md). Only a process that serves the API serves it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = ["DOCS_PATH", "add_docs_routes"]

DOCS_PATH = "/docs"
#: The assets the page loads, by file name in the package, and their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
_ASSET_PACKAGE = "fastapi_offline"
# Inline script and style are Swagger UI's own bootstrapping; everything else from here.
_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)


@cache
def _asset(name: str) -> bytes:
    # Read once per process, on first use: the bundle is 1.5 MB that API-only tests and
    # most processes never ask for.
    return (resources.files(_ASSET_PACKAGE) / "static" / name).read_bytes()


def _serve_asset(name: str, media_type: str) -> Callable[[], Response]:
    def serve() -> Response:
        return Response(
            _asset(name),
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return serve


def add_docs_routes(app: FastAPI, openapi_url: str) -> None:
    """Serve Swagger UI at :data:`DOCS_PATH` over ``openapi_url``."""

    def page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        html = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{DOCS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_PATH}/favicon.png",
            # No online validator badge: it would send the document's URL elsewhere.
            swagger_ui_parameters={"validatorUrl": None},
        )
        html.headers["Content-Security-Policy"] = _POLICY
        return html

    app.add_api_route(DOCS_PATH, page, methods=["GET"], include_in_schema=False)
    for name, media_type in ASSETS.items():
        app.add_api_route(
            f"{DOCS_PATH}/{name}",
            _serve_asset(name, media_type),
            methods=["GET"],
            include_in_schema=False,
        )
