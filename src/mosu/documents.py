"""Documents from users, YAML or JSON, read under bounds; job specs from them.

The one reader of YAML: ``mosu.core`` stays on the standard library (and pydantic), so
the parser with its bounds lives here, beside the service and the CLI that read specs.
YAML is bounded like JSON (``core.jobspec``): at most ``MAX_DEPTH`` levels, at most
``MAX_YAML_BYTES``, at most ``MAX_YAML_NODES`` values once its aliases are expanded,
no duplicate keys; errors name the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from mosu.core.api import MAX_DEPTH, JobSpec
from mosu.core.errors import InvalidInput, MalformedInput
from mosu.core.jobspec import job_spec_from_mapping, parse_json

MAX_YAML_BYTES = 64 * 1024
"""YAML is parsed by pure Python, about 2-10 s of CPU per MiB: a spec written by hand
needs a few hundred bytes, and a larger one can be sent as JSON."""
MAX_YAML_NODES = 50_000
"""Values a YAML document may hold with its aliases expanded (``&a [*b, *b, ...]``
grows exponentially otherwise)."""


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
            event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
            raise _Bound(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
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
                f"more than {MAX_YAML_NODES} values once aliases are expanded",
                getattr(node, "start_mark", None),
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
