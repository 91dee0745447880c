"""``mosu secret``: a tenant's named secrets; a job gets them by naming them in ``secrets``."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, table, when
from mosu.core.api import MAX_BODY_BYTES
from mosu.core.errors import InvalidInput

app = typer.Typer(
    help="Secrets: stored encrypted, given to your jobs as environment variables.",
    no_args_is_help=True,
)
TenantOpt = Annotated[
    str | None,
    typer.Option(help="The tenant (operator only; a tenant's token means its own)."),
]


def read_value() -> str:
    """The value from stdin (one trailing newline dropped), or typed without echo."""
    if sys.stdin.isatty():
        return getpass.getpass("value: ")
    data = sys.stdin.buffer.read(MAX_BODY_BYTES + 1)
    if len(data) > 1 << 16:
        raise InvalidInput("a secret is at most 64 KiB", field="value")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("a secret must be UTF-8 text (encode binary, e.g. base64)") from None
    return text.removesuffix("\n").removesuffix("\r")


@app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="Its name: the job's environment variable.")],
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Store or replace a secret; the value is read from stdin, never from the command line."""
    value = read_value()
    with config.client() as c:
        stored = c.set_secret(name, value, tenant=tenant)
    emit(output, stored, lambda: f"secret {stored.name} stored")


@app.command("list")
def list_(tenant: TenantOpt = None, output: OutputOpt = Output.TABLE) -> None:
    """Secrets by name; values are never shown."""
    with config.client() as c:
        found = c.list_secrets(tenant=tenant)
    rows = [(s.name, s.tenant, when(s.created_at), when(s.updated_at)) for s in found]
    columns = ["name", "tenant", "created", "updated"]
    emit(output, found, lambda: table(None, columns, rows) if found else "no secrets")


@app.command("delete")
def delete(name: str, tenant: TenantOpt = None, output: OutputOpt = Output.TABLE) -> None:
    """Forget a secret; a job naming it that has not started yet fails when it would."""
    with config.client() as c:
        c.delete_secret(name, tenant=tenant)
    emit(output, {"name": name, "deleted": True}, lambda: f"secret {name} deleted")
