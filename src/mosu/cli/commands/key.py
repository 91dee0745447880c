"""``mosu key``: gateway API keys, scoped to models, with request and token limits."""

from __future__ import annotations

from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, table, when
from mosu.client.services import ServicesApi
from mosu.core.service_api import KeyCreate

app = typer.Typer(
    help="Gateway API keys: models, limits, revocation, metered tokens.", no_args_is_help=True
)


@app.command("create")
def create(
    model: Annotated[list[str], typer.Option("--model", help="A model it may call (repeat).")],
    name: Annotated[str, typer.Option(help="Its name.")] = "default",
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    tenant: Annotated[str | None, typer.Option(help="For this tenant (operator only).")] = None,
    showcase: Annotated[bool, typer.Option(help="Operator: the showcase page's key.")] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create a key and print it (shown once)."""
    body = KeyCreate(name=name, models=model, rpm=rpm, tpm=tpm, showcase=showcase)
    with config.client() as c:
        out = ServicesApi(c).create_key(body, tenant=tenant)
    emit(output, out, lambda: str(out.key))


@app.command("list")
def list_(output: OutputOpt = Output.TABLE) -> None:
    """Keys with their models and limits; never the keys themselves."""
    with config.client() as c:
        keys = ServicesApi(c).list_keys()
    rows = [
        (
            k.id,
            k.name,
            k.tenant or "(operator)",
            k.prefix + "…",
            ", ".join(k.models),
            k.rpm or "-",
            k.tpm or "-",
            when(k.revoked_at),
        )
        for k in keys
    ]
    columns = ["id", "name", "tenant", "key", "models", "rpm", "tpm", "revoked"]
    emit(output, keys, lambda: table(None, columns, rows) if rows else "no keys")


@app.command("revoke")
def revoke(key_id: int, output: OutputOpt = Output.TABLE) -> None:
    """Revoke a key: the gateway refuses it within a second."""
    with config.client() as c:
        out = ServicesApi(c).revoke_key(key_id)
    emit(output, out, lambda: f"key {out.id} revoked")


@app.command("usage")
def usage(output: OutputOpt = Output.TABLE) -> None:
    """Requests and tokens per key and model."""
    with config.client() as c:
        rows = ServicesApi(c).key_usage()
    columns = ["key", "model", "owner", "requests", "prompt tokens", "completion tokens"]
    data = [
        (u.key_id, u.model, u.owner, u.requests, u.prompt_tokens, u.completion_tokens) for u in rows
    ]
    emit(output, rows, lambda: table(None, columns, data) if data else "no usage")
