"""``mosu login``: check a server URL and a token, then save both to the client config
(the token is read from stdin or a hidden prompt, never from the command line, where
the shell's history and the process list would keep it)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from mosu.cli import config
from mosu.client import Client
from mosu.core.errors import InvalidInput, Unauthorized


def login(
    url: Annotated[
        str | None,
        typer.Option(
            help=f"The mosu server (default: MOSU_URL, the saved one, {config.DEFAULT_URL})."
        ),
    ] = None,
    with_token: Annotated[
        bool,
        typer.Option("--with-token", help="Read the token from stdin (e.g. from a file)."),
    ] = False,
) -> None:
    """Save a server URL and an API token to the client config, after checking them."""
    target = (url or config.load().url).rstrip("/")
    if with_token or not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        token = getpass.getpass(f"token for {target}: ").strip()
    if not token:
        raise InvalidInput("no token given (paste it at the prompt, or pipe it with --with-token)")
    try:
        with Client(target, token) as c:
            mine = next((t for t in c.list_tokens() if t.current), None)
    except Unauthorized as exc:
        raise InvalidInput(f"{target} refused the token: {exc.message}", field="token") from None
    who = "the operator" if mine is None or mine.tenant is None else f"tenant {mine.tenant}"
    path = config.save(target, token)
    print(f"logged in to {target} as {who}; saved to {path}")
