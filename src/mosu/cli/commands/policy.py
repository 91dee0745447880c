"""``mosu policy list``: every ordering, placement and profile mosu ships."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mosu.sim.catalog import policy_catalog

app = typer.Typer(help="The scheduling policies mosu ships.", no_args_is_help=True)


@app.command("list")
def list_policies(
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """Print every queue ordering, placement and scheduling profile with one line each."""
    rows = policy_catalog()
    if output == "json":
        import json

        typer.echo(
            json.dumps(
                [{"kind": r.kind, "name": r.name, "description": r.description} for r in rows],
                indent=2,
            )
        )
        return
    if output != "table":
        from mosu.core.errors import InvalidInput

        raise InvalidInput(f"unknown output {output!r}; use table or json", field="output")
    table = Table(title="policies (profiles name an ordering and a placement)")
    for column in ("kind", "name", "description"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.kind, r.name, r.description)
    Console(width=160).print(table)
