"""The OpenAPI document, complete: every operation declares the errors it can answer, the
bearer scheme puts an Authorize button on ``/docs``, and the ``JobSpec`` that
``POST /v1/jobs`` reads as JSON or YAML is a schema of its own.

Routes declare the errors of their own rules (``responses=errors(403, 404)``); the ones
every operation of a kind shares are added here, once:

- a token-protected operation: 401, and 503 when the store is unavailable;
- an operation with parameters or a body: 422 naming the field;
- a write under ``/v1`` (POST, PUT, PATCH, DELETE): 400 (malformed body), 413 (too large)
  and 415 (not JSON), from ``RequestGuard``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from mosu.core.api import MAX_BODY_BYTES, MAX_DEPTH, ErrorBody, JobSpec

ERROR_DESCRIPTIONS = {
    400: f"Malformed body: bad syntax, a duplicate key or nesting deeper than {MAX_DEPTH}",
    401: "Missing, malformed, unknown, expired or revoked token",
    403: "Only the operator may do this",
    404: "No such resource (another tenant's resources are not found either)",
    409: "Conflicts with the current state; the message says how to resolve it",
    413: f"Body larger than {MAX_BODY_BYTES // 1024} KiB",
    415: "Body is not JSON (or YAML, where the operation reads it)",
    422: "A field or parameter is invalid; the error names it",
    503: "The store is unavailable for now; the same request may succeed later",
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_WRITES = {"post", "put", "patch", "delete"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: these error statuses, each with the error body."""
    return {
        status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ERROR_REF}},
    }


class OperationIndex:
    """Which methods each path has and which body types each operation reads, from the
    document itself (so the guard, ``Allow`` and the document cannot disagree)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._paths: list[tuple[re.Pattern[str], dict[str, frozenset[str]]]] = []
        self._literal: dict[str, dict[str, frozenset[str]]] = {}
        for path, item in document.get("paths", {}).items():
            pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path))
            operations = {
                method.upper(): frozenset((operation.get("requestBody") or {}).get("content", {}))
                for method, operation in item.items()
            }
            self._paths.append((re.compile(f"^{pattern}$"), operations))
            if "{" not in path:
                self._literal[path] = operations

    def _operations(self, path: str) -> dict[str, frozenset[str]]:
        # A literal path (``/v1/tokens/rotate``) is that resource alone, even where a
        # template (``/v1/tokens/{token_id}``) would match it too.
        exact = self._literal.get(path)
        if exact is not None:
            return exact
        found: dict[str, frozenset[str]] = {}
        for pattern, operations in self._paths:
            if pattern.match(path):
                found.update(operations)
        return found

    def methods(self, path: str) -> list[str]:
        """The methods ``path`` has, for ``Allow``."""
        return sorted(self._operations(path))

    def body_types(self, method: str, path: str) -> frozenset[str]:
        """The media types the operation declares for its body (empty: JSON only)."""
        return self._operations(path).get(method, frozenset())


def install(app: FastAPI) -> Callable[[], OperationIndex]:
    """Make ``app.openapi()`` build the complete document (once, then cached); returns
    the index of its operations (built on first use)."""
    index: list[OperationIndex] = []

    def operations() -> OperationIndex:
        if not index:
            index.append(OperationIndex(app.openapi()))
        return index[0]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        spec = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in spec.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["JobSpec"] = spec
        components.setdefault("ErrorBody", ErrorBody.model_json_schema())
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                _complete(path, method, operation)
        # Validation errors are answered as ErrorBody, so FastAPI's own shapes are unused.
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return operations


LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("post", "/v1/jobs"): {
        f"{verb}{suffix.title().replace('/', '')}": {
            "operationRef": f"#/paths/~1v1~1jobs~1{{job_id}}{suffix.replace('/', '~1')}/{verb}",
            "parameters": {"job_id": "$response.body#/id"},
        }
        for verb, suffix in (
            ("get", ""),
            ("get", "/why"),
            ("get", "/events"),
            ("get", "/logs"),
            ("post", "/cancel"),
        )
    },
    ("post", "/v1/tenants"): {
        f"{verb}{suffix.title().replace('/', '')}": {
            "operationRef": f"#/paths/~1v1~1tenants~1{{name}}{suffix.replace('/', '~1')}/{verb}",
            "parameters": {"name": "$response.body#/tenant/name"},
        }
        for verb, suffix in (("get", ""), ("patch", ""), ("put", "/quotas"), ("post", "/tokens"))
    },
    ("post", "/v1/nodes"): {
        f"post{action.title()}": {
            "operationRef": f"#/paths/~1v1~1nodes~1{{name}}~1{action}/post",
            "parameters": {"name": "$response.body#/name"},
        }
        for action in ("drain", "undrain")
    },
    ("post", "/v1/tokens"): {
        "revoke": {
            "operationRef": "#/paths/~1v1~1tokens~1{token_id}/delete",
            "parameters": {"token_id": "$response.body#/info/id"},
        }
    },
    ("put", "/v1/secrets/{name}"): {
        "delete": {
            "operationRef": "#/paths/~1v1~1secrets~1{name}/delete",
            "parameters": {"name": "$request.path.name", "tenant": "$request.query.tenant"},
        }
    },
}
"""What a created resource's answer lets a client call next (OpenAPI links), e.g. the job
a submission created: ``$response.body#/id`` is its ``job_id``."""


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    # An HTTP parameter is a string or absent, never JSON null: ``str | None`` means
    # "optional", which ``required: false`` already says.
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1 and len(schema["anyOf"]) == 2:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**options[0], **rest}
    return schema


def _complete(path: str, method: str, operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if "schema" in parameter:
            parameter["schema"] = _not_null(parameter["schema"])
    links = LINKS.get((method, path))
    if links:
        created = "201" if "201" in operation["responses"] else "200"
        operation["responses"][created]["links"] = links
    responses = operation.setdefault("responses", {})
    shared: set[int] = set()
    if operation.get("security"):
        shared |= {401, 503}
    if operation.get("parameters") or "requestBody" in operation:
        shared.add(422)
    if method in _WRITES and path.startswith("/v1/"):
        shared |= {400, 413, 415, 422}
    for status in sorted(shared):
        responses[str(status)] = _error_response(status)
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            response["content"] = {"application/json": {"schema": _ERROR_REF}}
