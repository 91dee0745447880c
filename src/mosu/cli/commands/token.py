"""``mosu token``: named API tokens with an optional expiry; create, list, revoke, rotate."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, table, when
from mosu.core.api import TokenInfo
from mosu.core.errors import InvalidInput, NotFound

app = typer.Typer(
    help="API tokens: several per tenant, each with a name, an expiry and revocation.",
    no_args_is_help=True,
)
TenantOpt = Annotated[
    str | None,
    typer.Option(help="The tenant (operator only; a tenant's token means its own)."),
]


@app.command("create")
def create(
    name: Annotated[str | None, typer.Argument(help="Its name (default: token-ID).")] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="For this tenant (operator only; none: an operator token)."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 30d or 12h (default: until revoked).")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create a token and print it (shown once)."""
    with config.client() as c:
        issued = c.create_token(name=name, tenant=tenant, expires_in=expires)
    emit(output, issued, lambda: issued.token)


def _rows(tokens: list[TokenInfo]) -> list[tuple[object, ...]]:
    return [
        (
            t.id,
            t.name + (" (this one)" if t.current else ""),
            t.tenant or "(operator)",
            when(t.created_at),
            when(t.expires_at) or "never",
            when(t.last_used_at) or "never",
            when(t.revoked_at),
        )
        for t in tokens
    ]


@app.command("list")
def list_(
    tenant: TenantOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Revoked and expired tokens too.")] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Tokens with their expiry and last use (to the minute); never their values."""
    with config.client() as c:
        tokens = c.list_tokens(tenant=tenant, include_dead=all_)
    columns = ["id", "name", "tenant", "created", "expires", "last used", "revoked"]
    emit(output, tokens, lambda: table(None, columns, _rows(tokens)) if tokens else "no tokens")


@app.command("revoke")
def revoke(
    token: Annotated[str, typer.Argument(help="The token's id or name.")],
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Revoke a token: refused at once, by every server sharing the store within a second."""
    with config.client() as c:
        token_id = _token_id(c.list_tokens(tenant=tenant), token)
        revoked = c.revoke_token(token_id)
    emit(output, revoked, lambda: f"token {revoked.id} ({revoked.name}) revoked")


def _token_id(tokens: list[TokenInfo], wanted: str) -> int:
    if wanted.isdigit():
        return int(wanted)
    matches = [t for t in tokens if t.name == wanted]
    if not matches:
        raise NotFound(f"no live token named {wanted!r}", field="token")
    if len(matches) > 1:
        owners = ", ".join(f"{t.id} ({t.tenant or 'operator'})" for t in matches)
        raise InvalidInput(
            f"several tokens are named {wanted!r}: {owners}; give the id or --tenant",
            field="token",
        )
    return matches[0].id


@app.command("rotate")
def rotate(output: OutputOpt = Output.TABLE) -> None:
    """Replace the token this command runs with by a new one (same name and lifetime);
    the old one stops working at once. A token from the saved client config is replaced
    there too."""
    cfg = config.load()
    with config.client() as c:
        issued = c.rotate_token()
    from_env = bool(os.environ.get("MOSU_TOKEN"))
    saved = None if from_env else config.save(cfg.url, issued.token)

    def render() -> str:
        if saved is not None:
            return f"token rotated; the new one is saved in {saved}"
        return f"{issued.token}\nMOSU_TOKEN still holds the old, revoked token: replace it"

    emit(output, issued, render)
