"""``mosu gateway``: the OpenAI-compatible gateway as a process of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mosu.core.errors import InvalidInput


def gateway(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 8766,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The server's data directory (its SQLite store).")
    ] = Path("~/.mosu"),
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="MOSU_GATEWAY_DATABASE_URL",
            help="The server's store (default: the SQLite file in --data-dir).",
        ),
    ] = None,
    wait_timeout: Annotated[
        float, typer.Option(help="Seconds a request waits for a first ready replica.")
    ] = 60.0,
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Route OpenAI-style calls (base_url http://HOST:PORT/v1) to model services."""
    from mosu.gateway.server import serve_gateway
    from mosu.service.main import _check_port

    if wait_timeout < 0:
        raise InvalidInput("must be 0 or more", field="--wait-timeout")
    if database_url is None:
        db = data_dir.expanduser() / "mosu.db"
        if not db.exists():
            raise InvalidInput(f"no mosu store at {db}; start mosu up first", field="--data-dir")
        database_url = f"sqlite:///{db}"
    _check_port(host, port)

    def ready() -> None:
        print(f"gateway is up at http://{host}:{port}/v1", flush=True)

    serve_gateway(
        database_url,
        host=host,
        port=port,
        wait_timeout_s=wait_timeout,
        on_ready=ready,
        parent_pid=parent_pid,
    )
