"""Job specs from JSON text and mappings, with errors that name the field and the reason.

Documents come from people who do not trust the platform and whom it does not trust, so
reading one is bounded: nesting at most ``MAX_DEPTH`` levels, no duplicate keys, no NaN
or infinities. A document that breaks a bound is ``MalformedInput`` (400); one that
parses but holds a bad field is ``InvalidInput`` (422). YAML, which needs a library
outside the standard one, is read by ``mosu.documents`` under the same bounds.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from mosu.core.api import (
    DURATION_PATTERN,
    MAX_DEPTH,
    MEMORY_PATTERN,
    NAME_PATTERN,
    NAME_RULE,
    TOPOLOGY_PATTERN,
    JobSpec,
)
from mosu.core.errors import InvalidInput, MalformedInput

_PATTERN_RULES = {
    NAME_PATTERN: f"must be {NAME_RULE}",
    DURATION_PATTERN: "is not a duration; use e.g. 90, '30m', '2h' or '1d'",
    MEMORY_PATTERN: "is not a size; use e.g. 4096 (MiB), '512Mi' or '16Gi'",
    TOPOLOGY_PATTERN: "expected zone/rack/node: up to three non-empty parts separated by '/'",
}
"""What a pattern means, in words (a user should never read a regex)."""
_TYPE_MISMATCH = {
    "string_type",
    "int_type",
    "float_type",
    "bool_type",
    "list_type",
    "dict_type",
    "is_instance_of",
    "model_type",
    "none_required",
}


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("env", "X")`` → ``env.X``; list positions as ``command[0]``. A key that holds
    control characters is shown escaped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if part.isprintable() else part.encode("unicode_escape").decode()
            out += f".{shown}" if out else shown
    return out


def error_message(error: Mapping[str, Any]) -> str:
    """The reason of one pydantic error, in words a user reads (not a regex)."""
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "string_pattern_mismatch":
        pattern: str | None = (error.get("ctx") or {}).get("pattern")
        rule = _PATTERN_RULES.get(pattern) if pattern is not None else None
        if rule is not None:
            return rule
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def best_error(errors: list[Any]) -> Any:
    """The error to report: a field of a union (``gpu_type: str | list[str]``) fails once
    per member, and the member whose type did not even match says least."""
    for error in errors:
        if error.get("type") not in _TYPE_MISMATCH:
            return error
    return errors[0]


def location(error: Mapping[str, Any]) -> str | None:
    loc = tuple(p for p in error.get("loc", ()) if not _is_union_tag(p))
    return field_path(loc) or None


def invalid_from_validation(exc: ValidationError, *, source: str = "") -> InvalidInput:
    """The most telling pydantic error as one ``InvalidInput`` naming the field."""
    errors = exc.errors()
    first = best_error(errors)
    message = error_message(first)
    prefix = f"{source}: " if source else ""
    # A union reports each member's failure for one field: count fields, not errors.
    others = len({location(e) for e in errors} - {location(first)})
    extra = f" (and {others} more problems)" if others else ""
    return InvalidInput(f"{prefix}{message}{extra}", field=location(first))


def _is_union_tag(part: int | str) -> bool:
    # pydantic adds the union member's type to the location ("gpus", "float"); drop it.
    return isinstance(part, str) and (
        part in {"int", "float", "str", "bool", "none"}
        or part.startswith(("function-", "constrained-", "literal["))
        or "[" in part
        or "(" in part
    )


# ---------------------------------------------------------------- JSON

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def check_json_depth(text: str, *, source: str = "request body") -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH`` before parsing it: the parser recurses
    once per level, and 100,000 levels exhaust the interpreter's stack."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise MalformedInput(f"{source}: nested deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def parse_json(text: str, *, source: str = "request body") -> Any:
    """JSON with the bounds above; ``MalformedInput`` names the line of a syntax error."""
    check_json_depth(text, source=source)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise MalformedInput(f"{source}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise MalformedInput(f"{source}: duplicate key {exc.key!r}") from None
    except ValueError as exc:  # NaN, Infinity or -Infinity
        raise MalformedInput(f"{source}: {exc} is not a JSON number") from None
    except RecursionError:  # only if MAX_DEPTH were raised past the stack
        raise MalformedInput(f"{source}: nested deeper than {MAX_DEPTH} levels") from None


def job_spec_from_mapping(data: dict[str, Any], *, source: str = "") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        error = invalid_from_validation(exc, source=source)
        first = best_error(exc.errors())
        if first.get("type") == "extra_forbidden" and len(first.get("loc", ())) == 1:
            # A slip (`gpu: 2`) is more often a near miss than an unknown wish.
            nearest = difflib.get_close_matches(str(first["loc"][0]), JobSpec.model_fields, n=1)
            if nearest:
                hint = f"unknown field; did you mean {nearest[0]!r}?"
                message = error.message.replace("unknown field", hint, 1)
                error = InvalidInput(message, field=error.field)
        raise error from None
