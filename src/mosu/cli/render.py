"""Rich tables for people, JSON for machines: every data command takes ``--output``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console, Group, RenderableType
from rich.table import Table


class Output(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


OutputOpt = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        help="table (fits the terminal), wide (every column, unwrapped) or json.",
        case_sensitive=False,
    ),
]

WIDEST_WORD = 40
"""A column is never narrower than its longest word, up to this width (then it folds)."""

console = Console()


def dump(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> str:
    if isinstance(data, BaseModel):
        obj: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        obj = data
    else:
        obj = [d.model_dump(mode="json") for d in data]
    return json.dumps(obj, indent=2)


def emit(
    output: Output,
    data: Any,
    table: Callable[[], RenderableType],
    wide: Callable[[], RenderableType] | None = None,
) -> None:
    """Print ``data`` as JSON, or as ``table()`` fitted to the terminal, or (``-o wide``)
    as ``wide()`` (else ``table()``) at its natural width, however wide that is."""
    if output == Output.JSON:
        print(dump(data))
        return
    rendered = (wide or table)() if output == Output.WIDE else table()
    if isinstance(rendered, str):
        print(rendered)
    elif output == Output.WIDE:
        Console(width=100_000).print(rendered)
    else:
        console.print(fitted(rendered) if isinstance(rendered, Table) else rendered)


def fitted(t: Table, width: int | None = None) -> RenderableType:
    """``t`` within ``width`` columns (the terminal's) with nothing cut off: a header or
    a cell wraps between words, never inside one; when even that is too wide, the columns
    are split into several tables, each repeating the first column (the row's name)."""
    width = console.width if width is None else width
    cells = [[str(x) for x in (c.header, *c.cells)] for c in t.columns]
    least = [min(max(len(w) for x in col for w in [*x.split(), ""]), WIDEST_WORD) for col in cells]
    most = [max(least[k], *(len(x) for x in cells[k][1:])) for k in range(len(cells))]
    most = [max(m, len(cells[k][0])) for k, m in enumerate(most)]
    if sum(m + 3 for m in most) + 1 <= width or len(t.columns) < 2:
        return t
    groups: list[list[int]] = [[]]
    used = least[0] + 4
    for k in range(1, len(t.columns)):
        if groups[-1] and used + least[k] + 3 > width:
            groups.append([])
            used = least[0] + 4
        groups[-1].append(k)
        used += least[k] + 3
    parts = []
    for n, group in enumerate(groups):
        picked = [0, *group]
        widths = {k: least[k] for k in picked}
        spare = width - 1 - sum(widths[k] + 3 for k in picked)
        for k in picked:  # give each column what it needs to stay on one line, in order
            extra = min(spare, most[k] - widths[k])
            widths[k] += extra
            spare -= extra
        part = Table(
            title=t.title if n == 0 else None,
            title_justify=t.title_justify,
            header_style=t.header_style,
        )
        for k in picked:
            c = t.columns[k]
            part.add_column(c.header, justify=c.justify, width=widths[k], overflow="fold")
        for row in zip(*(list(t.columns[k].cells) for k in picked), strict=True):
            part.add_row(*row)
        parts.append(part)
    return parts[0] if len(parts) == 1 else Group(*parts)


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
