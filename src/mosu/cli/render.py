"""Rich tables for people, JSON for machines: every data command takes ``--output``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="Print a table or JSON.", case_sensitive=False)
]

console = Console()


def dump(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> str:
    if isinstance(data, BaseModel):
        obj: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        obj = data
    else:
        obj = [d.model_dump(mode="json") for d in data]
    return json.dumps(obj, indent=2)


def emit(output: Output, data: Any, table: Callable[[], Table | str]) -> None:
    if output == Output.JSON:
        print(dump(data))
        return
    rendered = table()
    if isinstance(rendered, str):
        print(rendered)
    else:
        console.print(rendered)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None) -> str:
    if value is None:
        return ""
    seconds = (value - datetime.now(UTC)).total_seconds()
    return duration(abs(seconds)) + (" from now" if seconds > 0 else " ago")


def start_range(likely: datetime | None, late: datetime | None, *, known: bool = True) -> str:
    """A pending job's start as "in 16s-46s" (likely start, late bound), from now;
    "unknown" when the scheduler has none, blank before its first cycle."""
    if not known:
        return ""
    if likely is None:
        return "unknown"
    now = datetime.now(UTC)
    text = duration(max(0.0, (likely - now).total_seconds()))
    if late is not None and late > likely:
        text += "-" + duration(max(0.0, (late - now).total_seconds()))
    return "in " + text


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def gpus(value: float) -> str:
    return f"{value:g}"
