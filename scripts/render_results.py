"""Record what the benchmarks print and render docs/results.md from it.

Every benchmark in ``bench/`` prints one JSON document (beside a table for people).
``record`` runs a command, keeps that document with the command line, the commit, the
time and how busy the machine was, in ``bench/results/NAME.json``; ``render`` turns
every record into ``docs/results.md``. No figure on that page is typed by hand, and each
says which command made it; ``render --check`` fails when the page and the records
disagree (the test suite runs it).

    python scripts/render_results.py record bench/bench_cycle.py --quick
    python scripts/render_results.py record --name fill --json out/fill/fill.json -- \\
        .venv/bin/mosu sim fill --nodes ... --pods ... --out out/fill
    python scripts/render_results.py render [--check]

A command that is a ``.py`` file runs under this interpreter. Its document is the last
JSON object it prints (or the file named by ``--json``), stored whole; the record is
named after the script (``bench_cycle``, ``bench_cycle.quick`` with ``--quick``) unless
``--name`` says otherwise. A new benchmark needs nothing here: it prints JSON, and its
record renders as tables.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "results.md"
LONG_LIST = 8
"""A list longer than this is shown as its length (a curve, per-sample values)."""


# ---------------------------------------------------------------- record


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last top-level JSON object in ``text``: benchmarks print tables and progress
    around it, and some print it indented over many lines."""
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("{"):
            try:
                value, _ = decoder.raw_decode(text, offset)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                found = value
        offset += len(line)
    return found


def describe(command: Sequence[str]) -> str:
    """The first docstring paragraph of a Python script the command runs, else empty."""
    for part in command:
        path = ROOT / part
        if part.endswith(".py") and path.is_file():
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            return " ".join(doc.split("\n\n")[0].split())
    return ""


def default_name(command: Sequence[str]) -> str:
    script = next((Path(p).stem for p in command if p.endswith(".py")), Path(command[0]).name)
    return f"{script}.quick" if "--quick" in command else script


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def record(command: list[str], *, name: str | None, json_path: Path | None) -> Path:
    argv = [sys.executable, *command] if command[0].endswith(".py") else command
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-4000:])
        raise SystemExit(f"{shlex.join(command)} exited with {done.returncode}; nothing recorded")
    if json_path is not None:
        document = json.loads((ROOT / json_path).read_text())
    else:
        document = last_json_object(done.stdout)
        if document is None:
            raise SystemExit(f"{shlex.join(command)} printed no JSON object; nothing recorded")
    shown = ["python", *command] if command[0].endswith(".py") else command
    entry = {
        "name": name or default_name(command),
        "about": describe(command),
        "command": shlex.join(shown),
        "recorded_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": [round(load_before, 1), round(load_after, 1)],
            "python": platform.python_version(),
            "system": f"{platform.system()} {platform.machine()}",
        },
        "wall_seconds": round(seconds, 1),
        "result": document,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{entry['name']}.json"
    out.write_text(json.dumps(entry, indent=1, sort_keys=False) + "\n")
    return out


# ---------------------------------------------------------------- render


def cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, list):
        if len(value) > LONG_LIST or any(isinstance(v, list | dict) for v in value):
            return f"({len(value)} values)"
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return f"({len(value)} fields)"
    return str(value).replace("|", "\\|").replace("\n", " ")


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested fields as dotted columns (``unallocated_pct_at_100.mean``)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict) and len(value) <= LONG_LIST:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


WIDE = 10
"""A table with more columns than this and few rows is shown turned, a row per field."""


def table(rows: list[tuple[str | None, dict[str, Any]]], first: str) -> list[str]:
    flat = [(label, flatten(r)) for label, r in rows]
    columns: list[str] = []
    for _, r in flat:
        columns += [c for c in r if c not in columns]
    if len(columns) > WIDE and len(flat) <= WIDE // 2:
        return _turned(flat, columns, first)
    head = ([first] if first else []) + columns
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in flat:
        cells = ([cell(label)] if first else []) + [cell(r.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _turned(
    flat: list[tuple[str | None, dict[str, Any]]], columns: list[str], first: str
) -> list[str]:
    """Fields down, items across: each item named by its label or its first text field."""
    names = []
    for k, (label, r) in enumerate(flat):
        text = next((v for v in r.values() if isinstance(v, str)), None)
        names.append(label if label is not None else text if text is not None else f"#{k + 1}")
    lines = [
        "| " + " | ".join(["field", *map(cell, names)]) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for c in columns:
        lines.append("| " + " | ".join([c, *(cell(r.get(c)) for _, r in flat)]) + " |")
    return lines


def _is_row(value: Any) -> bool:
    """An object fit for one table row: nothing under it holds objects of its own
    (those get sections); long lists and wide objects show as their length."""
    if not isinstance(value, dict) or any(_holds_objects(v) for v in value.values()):
        return False
    # An object of objects is a grouping (per model, per backend): a table of its own.
    return not value or not all(isinstance(v, dict) for v in value.values())


def _holds_objects(value: Any) -> bool:
    if isinstance(value, list):
        return any(isinstance(v, dict | list) for v in value if not _is_pair(v))
    if isinstance(value, dict):
        return any(isinstance(v, dict) or _holds_objects(v) for v in value.values())
    return False


def _is_pair(value: Any) -> bool:
    """A point of a curve, ``[x, y]``: data, not structure."""
    return isinstance(value, list) and all(not isinstance(v, dict | list) for v in value)


def render_value(value: Any, title: str, depth: int) -> Iterator[str]:
    """A JSON document as Markdown: scalars as a field list, a list of objects or an
    object of objects as a table, anything deeper as sections."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        yield from table([(None, v) for v in value], "")
        return
    if not isinstance(value, dict):
        yield cell(value)
        return
    scalars = {k: v for k, v in value.items() if not isinstance(v, dict | list) or _short(v)}
    nested = {k: v for k, v in value.items() if k not in scalars}
    if scalars:
        yield from (f"- {k}: {cell(v)}" for k, v in scalars.items())
        yield ""
    for key, sub in nested.items():
        heading = "#" * min(depth, 6)
        yield f"{heading} {title} · {key}" if title else f"{heading} {key}"
        yield ""
        if isinstance(sub, dict) and sub and all(isinstance(v, dict) for v in sub.values()):
            yield from _group(key, sub, depth)
        else:
            yield from render_value(sub, key, depth + 1)
        yield ""


def _group(key: str, group: dict[str, dict[str, Any]], depth: int) -> Iterator[str]:
    """Items of one kind (policies, backends, pages): their flat fields as one table, a
    row per item, then each item's deeper fields as sections of their own. Groups of
    groups (per model, then per policy) get a section and a table each."""
    if all(item and _is_grouping(item) for item in group.values()):
        for name, item in group.items():
            yield f"{'#' * min(depth + 1, 6)} {key} · {name}"
            yield ""
            yield from _group(name, item, depth + 1)
            yield ""
        return
    rows = [(name, _flat_part(item)) for name, item in group.items()]
    if any(r for _, r in rows):
        yield from table([(n, r) for n, r in rows if r], key)
        yield ""
    for name, item in group.items():
        for field, value in item.items():
            if field in _flat_part(item):
                continue
            yield f"{'#' * min(depth + 1, 6)} {name} · {field}"
            yield ""
            if (
                isinstance(value, dict)
                and value
                and all(isinstance(v, dict) for v in value.values())
            ):
                yield from _group(field, value, depth + 1)
            else:
                yield from render_value(value, field, depth + 2)
            yield ""


def _flat_part(item: dict[str, Any]) -> dict[str, Any]:
    """The fields of an item that fit a table row."""
    return {
        k: v
        for k, v in item.items()
        if not _holds_objects(v) and not (isinstance(v, dict) and v and _is_grouping(v))
    }


def _is_grouping(value: dict[str, Any]) -> bool:
    return all(isinstance(v, dict) for v in value.values())


def _short(value: list[Any] | dict[str, Any]) -> bool:
    if isinstance(value, list):
        return not value or not all(isinstance(v, dict) for v in value)
    return False


BAR_WIDTH = 40


def bar_chart(points: list[dict[str, Any]], x: str, y: str) -> list[str]:
    """One series of a curve as a text bar chart: a bar per point, as long as its value
    over the series' largest, the value written after it."""
    rows = [(p.get(x), p.get(y)) for p in points]
    values = [v for _, v in rows if isinstance(v, int | float) and not isinstance(v, bool)]
    top = max(values, default=0) or 1
    labels = [f"{cell(k)} {x}" for k, _ in rows]
    width = max((len(label) for label in labels), default=0)
    lines = [f"{y} by {x}", ""]
    for label, (_, v) in zip(labels, rows, strict=True):
        if isinstance(v, int | float) and not isinstance(v, bool):
            bar = "█" * max(1, round(BAR_WIDTH * v / top)) if v > 0 else ""
            lines.append(f"{label:>{width}} │{bar:<{BAR_WIDTH}} {cell(v)}")
        else:
            lines.append(f"{label:>{width}} │{'':<{BAR_WIDTH}} -")
    return lines


def render_plots(result: dict[str, Any]) -> list[str]:
    """Charts a benchmark asks for with ``"plot": {"points": KEY, "x": FIELD, "y":
    [FIELD, ...]}``: each ``y`` of the list of objects under ``KEY`` against ``x``."""
    spec = result.get("plot")
    if not isinstance(spec, dict):
        return []
    points = result.get(str(spec.get("points")))
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        return []
    lines: list[str] = []
    for y in spec.get("y", []):
        lines += ["```", *bar_chart(points, str(spec.get("x")), str(y)), "```", ""]
    return lines


def render_entry(entry: dict[str, Any]) -> list[str]:
    machine = entry["machine"]
    before, after = machine["load_average"]
    lines = [f"## {entry['name']}", ""]
    if entry.get("about"):
        lines += [entry["about"], ""]
    lines += [
        "```",
        entry["command"],
        "```",
        "",
        f"Recorded {entry['recorded_at']} at commit `{entry['commit']}`, "
        f"{entry['wall_seconds']:,} s wall, on {machine['cpus']} CPUs "
        f"({machine['system']}, Python {machine['python']}) with load average "
        f"{before} before and {after} after.",
        "",
    ]
    result = entry["result"]
    shown = {k: v for k, v in result.items() if k != "plot"} if isinstance(result, dict) else result
    for line in [
        *render_plots(result if isinstance(result, dict) else {}),
        *render_value(shown, "", 3),
    ]:
        if line or lines[-1]:  # one blank line between blocks
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return [*lines, ""]


def load_entries() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]


def render(entries: list[dict[str, Any]]) -> str:
    lines = [
        "# Results",
        "",
        "<!-- Generated by scripts/render_results.py from bench/results/*.json: "
        "do not edit; record again and render. -->",
        "",
        "Every figure here is what a benchmark printed, kept in `bench/results/` by",
        "`python scripts/render_results.py record COMMAND` and rendered by",
        "`python scripts/render_results.py render`. Each section gives the command that",
        "made it, the commit, and how busy the machine was; a `.quick` record is the",
        "small run CI makes (`make bench-quick`), the others are full runs. To refresh a",
        "figure, run its command through `record` and render again.",
        "",
    ]
    lines += [f"- [{e['name']}](#{_anchor(e['name'])})" for e in entries]
    lines.append("")
    for entry in entries:
        lines += render_entry(entry)
    return "\n".join(lines).rstrip("\n") + "\n"


def _anchor(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    rec = sub.add_parser("record", help="run a command and keep the JSON it prints")
    rec.add_argument("--name", help="record name (default: the script's, .quick if --quick)")
    rec.add_argument("--json", type=Path, help="read the document from this file instead")
    rec.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    ren = sub.add_parser("render", help="write docs/results.md from bench/results/")
    ren.add_argument("--check", action="store_true", help="fail if docs/results.md is stale")
    args = parser.parse_args(argv)
    if args.action == "record":
        command = list(args.command)
        if command[:1] == ["--"]:
            command = command[1:]
        if not command:
            parser.error("record needs a command")
        print(record(command, name=args.name, json_path=args.json).relative_to(ROOT))
        return 0
    text = render(load_entries())
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run scripts/render_results.py render")
            return 1
        return 0
    PAGE.write_text(text)
    print(PAGE.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
