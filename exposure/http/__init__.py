"""HTTP edge helpers shared by every service: padding, chaff and strict JSON bodies.

They hold the privacy mechanics that belong at the edge (ARCHITECTURE.md, rule 4), so the
services' ``api.py`` modules stay thin and every API behaves the same way on the wire:

- :mod:`exposure.http.padding`: random base64 padding for responses.
- :mod:`exposure.http.chaff`: an ASGI middleware that answers ``X-Chaff`` requests like
  real ones without ever passing them to the application.
- :mod:`exposure.http.body`: strict JSON request parsing with Go ``encoding/json``
  compatible errors (content type, size, one object, unknown fields).
"""

from exposure.http.body import (
    BodyError,
    decode_json_object,
    json_body,
    parse_model,
    read_json_object,
)
from exposure.http.chaff import CHAFF_HEADER, ChaffMiddleware
from exposure.http.padding import random_padding

__all__ = [
    "CHAFF_HEADER",
    "BodyError",
    "ChaffMiddleware",
    "decode_json_object",
    "json_body",
    "parse_model",
    "random_padding",
    "read_json_object",
]
