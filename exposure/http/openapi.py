"""The OpenAPI document of every route, declared next to the route it describes.

Most routes are plain Starlette routes (``/v1/publish``, the ``/api/*`` calls): each reads
its own body, because FastAPI's per-request parameter and dependency resolution would only
cost time on the hot paths. FastAPI therefore cannot see what they take or answer. So every
route is registered through a :class:`DocumentedRouter` together with its
:class:`Operation`: the path and method come from the declaration, which names the pydantic
models the handler really parses and answers with, each status code it can answer, its
parameters and the API key it needs. :func:`openapi_document` builds the whole document
from those declarations alone (FastAPI's generator is not used), so what is documented is
what is registered, and registering costs the request path nothing.

The schemas are pydantic's validation-mode JSON Schemas of the models: the request models
are exactly what the handlers validate against (field names as on the wire, camelCase as
Google's APIs; matched in any ASCII case where the operation says so).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "API_KEY_HEADER",
    "Answer",
    "ChaffResponse",
    "DocumentedRouter",
    "KeyKind",
    "Operation",
    "Parameter",
    "openapi_document",
]

OPENAPI_VERSION = "3.1.0"
#: The header every authenticated call carries its key in.
API_KEY_HEADER = "X-API-Key"
_REF_TEMPLATE = "#/components/schemas/{model}"


class KeyKind(StrEnum):
    """Which kind of ``X-API-Key`` an operation needs; one security scheme each."""

    ADMIN = "adminKey"
    DEVICE = "deviceKey"
    AUDITOR = "auditorKey"


_KEY_DESCRIPTIONS = {
    KeyKind.ADMIN: "A verification realm's **admin** API key, held by labs: issues codes "
    "(`exposure admin apikey create --type admin`, or `exposure admin bootstrap`).",
    KeyKind.DEVICE: "A verification realm's **device** API key, built into the apps: trades "
    "codes for tokens and tokens for certificates (`--type device`).",
    KeyKind.AUDITOR: "An **auditor** key: `exposure admin auditor-key create`, or a realm's "
    "API key of type `auditor`. Reads the retention log and the compliance report only.",
}

#: What each kind of key is called in operation descriptions.
KEY_NAMES = {KeyKind.ADMIN: "an admin", KeyKind.DEVICE: "a device", KeyKind.AUDITOR: "an auditor"}


class ChaffResponse(BaseModel):
    """What an ``X-Chaff`` request is answered with: padding only, nothing done."""

    padding: str = Field(description="Random base64 sized like recent real answers.")


@dataclass(frozen=True)
class Parameter:
    """A path, query or header parameter."""

    name: str
    location: Literal["path", "query", "header"]
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    #: A value that works (Swagger UI fills it in; schemathesis sends it first).
    example: str | None = None

    def render(self) -> dict[str, Any]:
        rendered = {
            "name": self.name,
            "in": self.location,
            "description": self.description,
            "required": self.required or self.location == "path",
            "schema": dict(self.schema),
        }
        if self.example is not None:
            rendered["example"] = self.example
        return rendered


@dataclass(frozen=True)
class Answer:
    """One status an operation answers: why, its body's type (a pydantic model, a union of
    them, ``list[Model]``, ``str``, ``bytes``; None: no body) and its headers."""

    description: str
    body: Any = None
    media_type: str = "application/json"
    #: Response header name → description (string values).
    headers: Mapping[str, str] = field(default_factory=dict)


#: The ``X-Chaff`` request header of the paths a phone sends chaff to.
CHAFF_PARAMETER = Parameter(
    "X-Chaff",
    "header",
    'Any non-empty value marks the request as chaff: it is answered `200 {"padding": '
    '"..."}`, sized and timed like real answers, and is never parsed, authenticated, '
    "counted or stored. Apps send it at random to hide real uploads.",
)


@dataclass(frozen=True)
class Operation:
    """One method on one path, as the handler behind it really behaves."""

    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    answers: Mapping[int, Answer]
    #: The model the handler parses its JSON body with; None: no body.
    request: type[BaseModel] | None = None
    request_description: str = ""
    parameters: Sequence[Parameter] = ()
    key: KeyKind | None = None

    def types(self) -> list[Any]:
        """Every type whose schema this operation refers to."""
        found = [self.request] if self.request is not None else []
        found.extend(answer.body for answer in self.answers.values() if answer.body is not None)
        return found

    def render(self, refs: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
        description = self.description
        if self.key is not None:
            description += (
                f"\n\nNeeds {KEY_NAMES[self.key]} API key in the `{API_KEY_HEADER}` header."
            )
        operation: dict[str, Any] = {
            "tags": [self.tag],
            "summary": self.summary,
            "description": description,
            "operationId": self.operation_id,
        }
        if self.parameters:
            operation["parameters"] = [parameter.render() for parameter in self.parameters]
        if self.request is not None:
            body: dict[str, Any] = {
                "required": True,
                "content": {"application/json": {"schema": dict(refs[self.request])}},
            }
            if self.request_description:
                body["description"] = self.request_description
            operation["requestBody"] = body
        operation["responses"] = {
            str(status): _render_answer(answer, refs)
            for status, answer in sorted(self.answers.items())
        }
        if self.key is not None:
            operation["security"] = [{self.key.value: []}]
        return operation


def _render_answer(answer: Answer, refs: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    rendered: dict[str, Any] = {"description": answer.description}
    if answer.headers:
        rendered["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in answer.headers.items()
        }
    if answer.body is not None:
        rendered["content"] = {answer.media_type: {"schema": dict(refs[answer.body])}}
    return rendered


Endpoint = Callable[..., Awaitable[Response] | Response]


class DocumentedRouter(APIRouter):
    """An APIRouter whose every route is registered from its :class:`Operation`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.operations: list[Operation] = []

    def add_documented_route(
        self, operation: Operation, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> None:
        """A plain Starlette route: the handler takes the request and reads it itself.

        Raises :class:`ValueError` for GET, which Starlette would also answer to HEAD,
        undocumented: a GET handler takes :meth:`add_documented_api_route`.
        """
        if operation.method == "GET":
            raise ValueError(f"GET {operation.path}: register it with add_documented_api_route")
        self.add_route(operation.path, endpoint, methods=[operation.method])
        self.operations.append(operation)

    def add_documented_api_route(self, operation: Operation, endpoint: Endpoint) -> None:
        """A FastAPI route: for GET (which it answers alone, without HEAD) and handlers that
        take path parameters as arguments."""
        self.add_api_route(
            operation.path,
            endpoint,
            methods=[operation.method],
            operation_id=operation.operation_id,
            include_in_schema=False,  # documented by the operation, not by FastAPI
        )
        self.operations.append(operation)


def _schemas(types: Sequence[Any]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """Each type's schema (a reference where it is a model) and every named definition."""
    unique = list(dict.fromkeys(types))
    # Validation mode for answers too: a model with a wrap serializer (leaving out empty
    # fields) has no serialization schema, and its fields are what the wire holds.
    mode: JsonSchemaMode = "validation"
    inputs = [(kind, mode, TypeAdapter(kind).core_schema) for kind in unique]
    generator = GenerateJsonSchema(ref_template=_REF_TEMPLATE)
    mapping, definitions = generator.generate_definitions(inputs)
    refs = {kind: dict(mapping[(kind, mode)]) for kind in unique}
    return refs, {str(name): schema for name, schema in definitions.items()}


def openapi_document(
    *, title: str, version: str, summary: str, description: str, operations: Sequence[Operation]
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    refs, definitions = _schemas([kind for operation in operations for kind in operation.types()])
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        methods = paths.setdefault(operation.path, {})
        method = operation.method.lower()
        if method in methods:
            raise ValueError(f"{operation.method} {operation.path} is declared twice")
        methods[method] = operation.render(refs)
    keys_used = sorted({operation.key for operation in operations if operation.key is not None})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "summary": summary,
            "description": description,
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(definitions.items())),
            "securitySchemes": {
                kind.value: {
                    "type": "apiKey",
                    "in": "header",
                    "name": API_KEY_HEADER,
                    "description": _KEY_DESCRIPTIONS[kind],
                }
                for kind in keys_used
            },
        },
        "tags": [{"name": tag} for tag in dict.fromkeys(operation.tag for operation in operations)],
    }
