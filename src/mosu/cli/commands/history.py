"""``mosu history export``: the platform's own history as a replayable trace."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from mosu.cli import config
from mosu.core.errors import InvalidInput
from mosu.core.history_api import HistoryExportOut

app = typer.Typer(help="The platform's own history (operator).", no_args_is_help=True)

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
META_FILE = "export.json"


def parse_when(text: str, now: float, option: str) -> float:
    """``30d`` (that long before ``now``; also s, m, h, w), epoch seconds, or an ISO date
    or time (naive = UTC)."""
    ago = _AGO.match(text)
    if ago:
        return now - float(ago.group(1)) * _UNIT_S[ago.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"bad time {text!r}: expected a duration ago such as 30d or 12h, epoch seconds "
            "or a date such as 2026-11-01",
            field=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def fetch(since: str | None, until: str | None) -> HistoryExportOut:
    now = time.time()
    start = parse_when(since, now, "since") if since else None
    end = parse_when(until, now, "until") if until else None
    if start is not None and start >= (now if end is None else end):
        raise InvalidInput("must be before --until (or now)", field="since")
    with config.client() as c:
        return c.export_history(since=start, until=end)


def write(exported: HistoryExportOut, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in exported.files.items():
        (out / name).write_text(text)
    meta = exported.model_dump(exclude={"files"})
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def counts_line(counts: dict[str, int]) -> str:
    parts = [f"{counts.get('jobs', 0):,} jobs"]
    for key, words in (
        ("exit", "ended by themselves"),
        ("max-runtime", "stopped at their max runtime"),
        ("cancelled", "cancelled"),
        ("running", "still running (run time so far)"),
        ("pending", "still pending (run time: their estimate, else 0)"),
    ):
        if counts.get(key):
            parts.append(f"{counts[key]:,} {words}")
    return ", ".join(parts)


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="directory for the trace files")],
    since: Annotated[
        str | None, typer.Option("--since", help="e.g. 30d, 12h, 2026-11-01 (default: all)")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="same forms (default: now)")] = None,
) -> None:
    """Write jobs.csv, tenants.csv and nodes.csv (mosu's native trace format) and
    export.json, for ``mosu sim replay --trace mosu:DIR/jobs.csv --tenants DIR/tenants.csv
    --nodes DIR/nodes.csv`` and ``mosu whatif --history DIR``; changes.csv when quotas or
    nodes changed during the window (``mosu sim replay --changes``)."""
    exported = fetch(since, until)
    write(exported, out)
    wrote = "jobs.csv, tenants.csv, nodes.csv"
    if exported.changes:
        wrote += f", changes.csv ({exported.changes:,} quota and node changes)"
    typer.echo(f"{counts_line(exported.counts)}; wrote {out}/{wrote}")
