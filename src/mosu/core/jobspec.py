"""Job specs from YAML or JSON text, with errors that name the field and the reason."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from mosu.core.api import NAME_PATTERN, NAME_RULE, JobSpec
from mosu.core.errors import InvalidInput


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("env", "X")`` → ``env.X``; list positions as ``command[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def error_message(error: Mapping[str, Any]) -> str:
    """The reason of one pydantic error, in words a user reads (not a regex)."""
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if (
        kind == "string_pattern_mismatch"
        and (error.get("ctx") or {}).get("pattern") == NAME_PATTERN
    ):
        return f"must be {NAME_RULE}"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def invalid_from_validation(exc: ValidationError, *, source: str = "") -> InvalidInput:
    """The first pydantic error as one ``InvalidInput`` naming the field."""
    first = exc.errors()[0]
    loc = tuple(p for p in first["loc"] if not _is_union_tag(p))
    name = field_path(loc) or None
    message = error_message(first)
    prefix = f"{source}: " if source else ""
    extra = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return InvalidInput(f"{prefix}{message}{extra}", field=name)


def _is_union_tag(part: int | str) -> bool:
    # pydantic adds the union member's type to the location ("gpus", "float"); drop it.
    return isinstance(part, str) and (
        part in {"int", "float", "str", "bool", "none"} or "[" in part or "(" in part
    )


def load_document(text: str, *, source: str = "job spec") -> dict[str, Any]:
    """Parse YAML (a superset of JSON) into a mapping; syntax errors name the line."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{source}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise InvalidInput(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    return data


def parse_job_spec(text: str, *, source: str = "job spec") -> JobSpec:
    return job_spec_from_mapping(load_document(text, source=source), source=source)


def job_spec_from_mapping(data: dict[str, Any], *, source: str = "") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_validation(exc, source=source) from None
