"""Job specs from YAML or JSON text, with errors that name the field and the reason.

Documents come from people who do not trust the platform and whom it does not trust, so
reading one is bounded: nesting at most ``MAX_DEPTH`` levels, YAML at most
``MAX_YAML_BYTES`` and ``MAX_YAML_NODES`` values once its aliases are expanded, no
duplicate keys, no NaN or infinities in JSON. A document that breaks a bound is
``MalformedInput`` (400); one that parses but holds a bad field is ``InvalidInput`` (422).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml
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

MAX_YAML_BYTES = 64 * 1024
"""YAML is parsed by pure Python, about 2-10 s of CPU per MiB: a spec written by hand
needs a few hundred bytes, and a larger one can be sent as JSON."""
MAX_YAML_NODES = 50_000
"""Values a YAML document may hold with its aliases expanded (``&a [*b, *b, ...]``
grows exponentially otherwise)."""

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
        rule = _PATTERN_RULES.get((error.get("ctx") or {}).get("pattern"))
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


# ---------------------------------------------------------------- YAML


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, composing at most ``MAX_DEPTH`` levels and ``MAX_YAML_NODES``
    values (aliases counted as often as they are used), with duplicate keys refused."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Bound(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = self._sizes.get(id(node))
        if size is None:  # a new node; an alias returns one already counted
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._sizes[id(child)] for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            self._sizes[id(node)] = size
        if size > MAX_YAML_NODES:
            raise _Bound(
                f"more than {MAX_YAML_NODES} values once aliases are expanded", node.start_mark
            )
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base`` may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the constructor says so below
                continue
            if duplicate:
                raise _Bound(f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


class _Bound(Exception):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


def parse_yaml(text: str, *, source: str = "request body") -> Any:
    """One YAML document with the bounds above; errors name the line."""
    if len(text.encode("utf-8", errors="replace")) > MAX_YAML_BYTES:
        raise MalformedInput(
            f"{source}: YAML larger than {MAX_YAML_BYTES // 1024} KiB; send it as JSON"
        )
    loader = None
    try:
        loader = _BoundedLoader(text)  # reading starts here: it refuses control characters
        return loader.get_single_data()
    except _Bound as exc:
        where = f"{source}:{exc.mark.line + 1}" if exc.mark is not None else source
        raise MalformedInput(f"{where}: {exc.problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise MalformedInput(
            f"{source}:{line}: malformed YAML: character U+{exc.character:04X} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise MalformedInput(f"{where}: malformed YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_document(text: str, *, source: str = "job spec") -> dict[str, Any]:
    """Parse YAML (a superset of JSON) into a mapping; syntax errors name the line."""
    if text.lstrip().startswith("{"):
        data = parse_json(text, source=source)
    else:
        data = parse_yaml(text, source=source)
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    return data


def parse_job_spec(text: str, *, source: str = "job spec") -> JobSpec:
    return job_spec_from_mapping(load_document(text, source=source), source=source)


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
