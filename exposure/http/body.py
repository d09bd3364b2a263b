"""Strict JSON request bodies, shared by every JSON API so they all fail the same way.

Deployed GAEN apps were written against Google's Go servers, whose ``jsonutil.Unmarshal``
defines what a valid request is and how an invalid one is refused. This module reproduces
those rules (see ``google-keyserver.md`` §1.2) and is stricter where Go is lax in ways an
attacker could use:

=================  ======  ====================================================
reason             status  when
=================  ======  ====================================================
``content_type``   415     ``Content-Type`` does not start with ``application/json``
``too_large``      413     the body is longer than ``max_bytes``
``empty``          400     the body is empty or only whitespace
``malformed``      400     not JSON: syntax error (with its byte offset), invalid
                           UTF-8, a duplicate key, ``NaN``/``Infinity``, a number
                           out of range, a lone surrogate escape, absurd nesting
``not_object``     400     the top-level value is not an object
``trailing_data``  400     anything but whitespace follows the object
``unknown_field``  400     a key the model does not declare (at any depth)
``invalid_value``  400     a value of the wrong type or out of the model's bounds,
                           or (when asked for) a string holding a control
                           character (see :mod:`exposure.text`)
=================  ======  ====================================================

Deliberate differences from Go's ``encoding/json``:

- Duplicate keys are refused (Go keeps the last), so two parsers can never read two
  different requests out of one body.
- ``NaN``, ``Infinity`` and numbers that overflow a double are refused.
- Invalid UTF-8 and lone surrogate escapes are refused (Go substitutes U+FFFD).
- Any non-whitespace after the object is trailing data (Go's ``Decoder.More`` lets a
  stray ``]`` or ``}`` through).
- Case-insensitive key matching, when asked for, folds ASCII letters only; Go also folds
  U+017F (long s) and U+212A (Kelvin sign), which no honest client sends.

Models are validated in pydantic's *strict JSON mode* (``model_validate_json(...,
strict=True)``), whatever their own configuration: a float (even ``1.0``), a string or a
boolean is never accepted for an ``int`` field, as in Go, and model authors need not
remember ``StrictInt``. JSON-mode strictness still accepts what JSON can only spell as a
string: enums by value, ``bytes``, dates. Every model (and nested model) must declare
``extra="forbid"``; :func:`parse_model` raises :class:`TypeError` otherwise, because
silently dropping unknown fields would hide client bugs that Go reports.

Example::

    @router.post("/v1/publish")
    async def publish(
        body: Annotated[
            PublishRequest,
            Depends(json_body(PublishRequest, max_bytes=64_000, case_insensitive=True)),
        ],
    ) -> PublishResponse: ...

The service's exception handler turns :class:`BodyError` into its own wire error body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import AliasChoices, BaseModel, ValidationError
from starlette.requests import Request

from exposure.json_codec import encode_json
from exposure.text import echo, fold_case, has_control_character

__all__ = [
    "JSON_CONTENT_TYPE",
    "BodyError",
    "BodyErrorReason",
    "decode_json_object",
    "json_body",
    "parse_model",
    "read_json_object",
]

M = TypeVar("M", bound=BaseModel)

BodyErrorReason = Literal[
    "content_type",
    "too_large",
    "empty",
    "malformed",
    "not_object",
    "trailing_data",
    "unknown_field",
    "invalid_value",
]

#: What ``Content-Type`` must start with (compared case-sensitively, as Go does).
JSON_CONTENT_TYPE = "application/json"

# JSON's insignificant whitespace (RFC 8259 §2); str.strip() would also drop other spaces.
_JSON_WHITESPACE = " \t\n\r"
_DECIMAL = re.compile(r"[0-9]+")


class BodyError(Exception):
    """A request body was refused; ``status`` and ``message`` are safe to send back.

    ``reason`` is a stable code for the API layer and for tests; ``message`` follows Go's
    wording and never quotes a rejected value, only field names.
    """

    def __init__(self, status: int, reason: BodyErrorReason, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason: BodyErrorReason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"BodyError({self.status}, {self.reason!r}, {self.message!r})"


class _NotJSONError(ValueError):
    """Raised by the decoder hooks: valid to Python's parser, not to ours."""


async def read_json_object(request: Request, *, max_bytes: int) -> dict[str, Any]:
    """Read ``request``'s body as exactly one JSON object of at most ``max_bytes`` bytes.

    The body is read chunk by chunk and reading stops as soon as the limit is crossed, so
    an oversized upload costs at most ``max_bytes`` of memory; a ``Content-Length`` over
    the limit is refused before anything is read.

    Raises :class:`BodyError` (any reason but ``unknown_field`` and ``invalid_value``),
    :class:`ValueError` if ``max_bytes`` is not positive, and Starlette's
    ``ClientDisconnect`` if the client goes away mid-body.
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    content_type = request.headers.get("content-type", "")
    # Go: len(t) < 16 || t[:16] != "application/json"; parameters such as charset may follow.
    if content_type[: len(JSON_CONTENT_TYPE)] != JSON_CONTENT_TYPE:
        raise BodyError(415, "content_type", "content-type is not application/json")
    if _declares_more_than(request.headers.get("content-length", ""), max_bytes):
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large()
        chunks.append(chunk)
    return decode_json_object(b"".join(chunks))


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Parse ``raw`` (UTF-8) as exactly one JSON object, refusing every ambiguity.

    The synchronous core of :func:`read_json_object`, for bodies that arrive another way.
    Raises :class:`BodyError` with reason ``empty``, ``malformed``, ``not_object`` or
    ``trailing_data``.
    """
    if not raw.strip(_JSON_WHITESPACE.encode("ascii")):
        raise BodyError(400, "empty", "body must not be empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _malformed_at(error.start) from error
    start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as error:
        raise _malformed_at(len(text[: error.pos].encode("utf-8"))) from error
    except _NotJSONError as error:
        raise BodyError(400, "malformed", f"malformed json: {error}") from error
    except (ValueError, RecursionError) as error:
        # Integers past Python's digit limit, or nesting deeper than the recursion limit.
        raise BodyError(
            400, "malformed", "malformed json: value too large or too deeply nested"
        ) from error
    if not isinstance(value, dict):
        raise BodyError(400, "not_object", "body must be a JSON object")
    if text[end:].strip(_JSON_WHITESPACE):
        raise BodyError(400, "trailing_data", "body must contain only one JSON object")
    # A \ud800 escape decodes to a lone surrogate that no UTF-8 store can hold. Only an
    # escape can make one (the text itself decoded as UTF-8), so a body without any is
    # not searched.
    if "\\u" in text:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            raise BodyError(400, "malformed", "malformed json: invalid unicode escape") from error
    return value


def parse_model(
    model: type[M],
    data: dict[str, Any],
    *,
    case_insensitive: bool = False,
    refuse_control_characters: bool = False,
) -> M:
    """Validate ``data`` (from :func:`read_json_object`) as ``model``, strictly.

    With ``case_insensitive=True``, keys are first matched to the model's aliases as Go's
    ``encoding/json`` does, at every depth: an exact match wins, otherwise any ASCII
    casing matches (``hmackey`` → ``hmacKey``). When several keys of one object land on
    the same field (``{"hmacKey": …, "HMACKEY": …}``), the last one wins, as in Go; exact
    duplicates never get this far (:func:`decode_json_object` refuses them).

    Strict JSON mode checks types, not ranges: declare bounds on the model (Go's int32
    fields overflow at ``2**31``, Python ints never do).

    With ``refuse_control_characters=True``, a string anywhere in ``data`` (a value or a
    key) holding a control character is ``invalid_value`` before anything else is looked
    at (the rule and its reasons: :mod:`exposure.text`).

    Raises :class:`BodyError` (``unknown_field`` or ``invalid_value``), :class:`TypeError`
    if ``model`` or a model nested in it does not forbid extra fields, and
    :class:`TypeError` or :class:`ValueError` if ``data`` is not plain JSON data.
    """
    _require_forbid_extra(model)
    if refuse_control_characters:
        _refuse_control_characters(data)
    candidate: Any = _fold_object(model, data) if case_insensitive else data
    try:
        return model.model_validate_json(encode_json(candidate), strict=True)
    except ValidationError as error:
        # Not chained: pydantic's errors quote the rejected input, which may be keys or
        # certificates, and a logged traceback must not carry them.
        raise _from_validation_error(error) from None


def json_body(
    model: type[M],
    *,
    max_bytes: int,
    case_insensitive: bool = False,
    refuse_control_characters: bool = False,
) -> Callable[[Request], Awaitable[M]]:
    """A FastAPI dependency that reads, parses and validates the body as ``model``.

    Use it with ``Depends(...)``; it raises :class:`BodyError` like the functions it
    composes, for the service's exception handler to render. The arguments are checked
    here, when the route is declared, rather than on the first request.
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    _require_forbid_extra(model)

    async def dependency(request: Request) -> M:
        data = await read_json_object(request, max_bytes=max_bytes)
        return parse_model(
            model,
            data,
            case_insensitive=case_insensitive,
            refuse_control_characters=refuse_control_characters,
        )

    return dependency


def _declares_more_than(content_length: str, limit: int) -> bool:
    """Whether a ``Content-Length`` value announces more than ``limit`` bytes.

    Anything but decimal digits is left to the incremental read (the server has already
    judged the framing); a very long number is compared by its length, because ``int()``
    refuses strings past Python's digit limit.
    """
    digits = content_length.strip()
    if not _DECIMAL.fullmatch(digits):
        return False
    significant = digits.lstrip("0")
    if len(significant) > len(str(limit)):
        return True
    return int(significant or "0") > limit


def _too_large() -> BodyError:
    # Go's http.MaxBytesReader wording, which the reference server sends back verbatim.
    return BodyError(413, "too_large", "http: request body too large")


def _malformed_at(position: int) -> BodyError:
    return BodyError(400, "malformed", f"malformed json at position {position}")


def _refuse_constant(name: str) -> Any:
    raise _NotJSONError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if number in (float("inf"), float("-inf")):
        raise _NotJSONError("number out of range")
    return number


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _NotJSONError(f"duplicate key {_quote(key)}")
        result[key] = value
    return result


_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
    object_pairs_hook=_unique_object,
)


def _quote(name: str) -> str:
    # Names quoted back to the client are cut short: a 60 kB key is not a message.
    return echo(name)


def _from_validation_error(error: ValidationError) -> BodyError:
    details = error.errors(include_url=False, include_context=False, include_input=False)
    for detail in details:
        if detail["type"] == "extra_forbidden":
            names = [part for part in detail["loc"] if isinstance(part, str)]
            return BodyError(400, "unknown_field", f"unknown field {_quote(names[-1])}")
    # Go names the field by its path without array indexes: "temporaryExposureKeys.key".
    return _invalid_value_at([part for part in details[0]["loc"] if isinstance(part, str)])


def _refuse_control_characters(data: dict[str, Any]) -> None:
    """Raise ``invalid_value`` naming a string (by Go's path) with a control character; a
    key that holds one names the object it is in.

    Iterative, not recursive: a body may nest as deep as the decoder allowed, which is
    close to the interpreter's recursion limit already.
    """
    pending: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if has_control_character(value):
                raise _invalid_value_at(path)
        elif isinstance(value, dict):
            for key, item in value.items():
                if has_control_character(key):
                    raise _invalid_value_at(path)
                pending.append((item, (*path, key)))
        elif isinstance(value, list):
            pending.extend((item, path) for item in value)


def _invalid_value_at(path: Sequence[str]) -> BodyError:
    if not path:
        return BodyError(400, "invalid_value", "invalid value")
    return BodyError(400, "invalid_value", f"invalid value for {_quote('.'.join(path))}")


@dataclass(frozen=True)
class _Shape:
    """How one model's keys are matched: its accepted names and its nested models."""

    exact: frozenset[str]
    folded: Mapping[str, str]
    nested: Mapping[str, type[BaseModel]]


@cache
def _shape(model: type[BaseModel]) -> _Shape:
    config = model.model_config
    by_alias = config.get("validate_by_alias", True) is not False
    by_name = bool(config.get("validate_by_name") or config.get("populate_by_name"))
    exact: set[str] = set()
    folded: dict[str, str] = {}
    nested: dict[str, type[BaseModel]] = {}
    for field_name, info in model.model_fields.items():
        names: list[str] = []
        if by_alias:
            alias = info.validation_alias
            if isinstance(alias, str):
                names.append(alias)
            elif isinstance(alias, AliasChoices):
                names.extend(choice for choice in alias.choices if isinstance(choice, str))
            else:
                names.append(info.alias or field_name)
        if by_name or not names:
            names.append(field_name)
        inner = _nested_model(info.annotation)
        for name in names:
            exact.add(name)
            # Go takes the first field in declaration order when only the folding matches.
            folded.setdefault(fold_case(name), name)
            if inner is not None:
                nested[name] = inner
    return _Shape(exact=frozenset(exact), folded=folded, nested=nested)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The one model a field holds directly or in a list/optional, if there is exactly one.

    A union of several models is not folded (which model's names would apply is only
    known after validation); its keys must then match exactly.
    """
    models = _models_in(annotation)
    return models[0] if len(models) == 1 else None


def _models_in(annotation: Any) -> tuple[type[BaseModel], ...]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return (annotation,)
    origin = get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return ()  # the keys of a mapping are data, not field names
    found: dict[type[BaseModel], None] = {}
    for argument in get_args(annotation):
        found.update(dict.fromkeys(_models_in(argument)))
    return tuple(found)


def _fold_object(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    shape = _shape(model)
    folded: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in shape.exact else shape.folded.get(fold_case(key), key)
        inner = shape.nested.get(name)
        folded[name] = value if inner is None else _fold_value(inner, value)
    return folded


def _fold_value(model: type[BaseModel], value: Any) -> Any:
    if isinstance(value, dict):
        return _fold_object(model, value)
    if isinstance(value, list):
        return [_fold_value(model, item) for item in value]
    return value


def _require_forbid_extra(model: type[BaseModel]) -> None:
    # Models are classes fixed at import time: one check each is enough, and the walk
    # through nested annotations would otherwise run on every request.
    if model not in _FORBID_EXTRA_CHECKED:
        _check_forbid_extra(model, set())
        _FORBID_EXTRA_CHECKED.add(model)


_FORBID_EXTRA_CHECKED: set[type[BaseModel]] = set()


def _check_forbid_extra(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    if model.model_config.get("extra") != "forbid":
        raise TypeError(f"{model.__qualname__} must declare extra='forbid' to parse request bodies")
    for info in model.model_fields.values():
        for inner in _models_in(info.annotation):
            _check_forbid_extra(inner, seen)
