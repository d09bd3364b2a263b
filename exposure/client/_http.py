"""JSON over HTTP for the SDK: one place that turns httpx's outcomes into SDK errors.

Nothing here logs, and no error message repeats a request body: bodies carry verification
codes, tokens, keys and HMAC secrets.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from exposure.client.errors import TransportFailed, UnexpectedResponse

#: The request header that marks chaff, as Google's servers and this one read it.
CHAFF_HEADER = "X-Chaff"
#: Request padding: at least this many random bytes (before base64), as Google's apps send.
PADDING_MINIMUM = 1024
#: ... plus a uniform random number of bytes below this, so the size itself varies.
PADDING_SPREAD = 1024
#: Every call gives up after this many seconds without progress.
DEFAULT_TIMEOUT = 30.0

RandomBytes = Callable[[int], bytes]


def random_padding(random_bytes: RandomBytes) -> str:
    """Base64 of 1,024 to 2,047 random bytes, for a request's ``padding`` field."""
    # 65,536 is a multiple of the spread, so the modulo draws every length equally often.
    extra = int.from_bytes(random_bytes(2), "big") % PADDING_SPREAD
    return base64.b64encode(random_bytes(PADDING_MINIMUM + extra)).decode("ascii")


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    """A server's answer: its status and its JSON object (empty if the body had none)."""

    status: int
    body: Mapping[str, Any]

    def text(self, name: str) -> str:
        """Field ``name`` as text; empty when absent or not text."""
        value = self.body.get(name)
        return value if isinstance(value, str) else ""

    def error_code(self) -> str:
        """The error code in either service's shape, else ``http_<status>``."""
        for name in ("errorCode", "code", "error_code"):
            code = self.text(name)
            if code:
                return code
        return f"http_{self.status}"

    def error_message(self) -> str:
        return self.text("error") or f"HTTP {self.status}"


def new_http_client(timeout: float = DEFAULT_TIMEOUT) -> httpx.Client:
    """The client the SDK makes when the app gives none: timeouts on, no redirects."""
    return httpx.Client(timeout=timeout, follow_redirects=False)


def post_json(
    http: httpx.Client,
    url: str,
    body: Mapping[str, Any],
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
) -> JsonAnswer:
    """POST ``body`` as JSON to ``url``; ``what`` names the call in error messages.

    Raises :class:`TransportFailed` when no answer came and :class:`UnexpectedResponse`
    when the answer is not a JSON object. Error statuses are returned, not raised: each
    caller maps them to its own error type.
    """
    content = json.dumps(body, separators=(",", ":")).encode("utf-8")
    try:
        response = http.post(
            url,
            content=content,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        # The type says what went wrong; httpx's message would repeat the URL, nothing more.
        raise TransportFailed(f"{what}: no answer ({type(error).__name__})") from None
    return JsonAnswer(response.status_code, _json_object(response, what))


def _json_object(response: httpx.Response, what: str) -> Mapping[str, Any]:
    try:
        parsed = json.loads(response.content) if response.content else {}
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    if not response.is_success:
        # An error page from a proxy or a load balancer: the status says enough.
        return {}
    raise UnexpectedResponse(
        f"{what}: the answer is not a JSON object", status=response.status_code
    )
