"""Run the gateway as a process of its own over the platform's store."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mosu.gateway.proxy import Gateway

log = logging.getLogger("mosu.gateway")


def build_gateway(database_url: str, *, wait_timeout_s: float = 60.0) -> Gateway:
    from mosu.service.db.session import make_engine, session_factory
    from mosu.service.services.credits_tokens import charge_tokens

    engine = make_engine(database_url)
    # Each flushed batch of token counts is charged to the models' owners in the
    # transaction that stores it: usage and charge commit together.
    gateway = Gateway(session_factory(engine), wait_timeout_s=wait_timeout_s, charge=charge_tokens)
    from mosu.gateway.showcase import mount_showcase

    mount_showcase(gateway)
    return gateway


def serve_gateway(
    database_url: str,
    *,
    host: str,
    port: int,
    wait_timeout_s: float = 60.0,
    on_ready: Callable[[], None] = lambda: None,
    parent_pid: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or, started by ``mosu up``, until that process ends)."""
    import uvicorn

    gateway = build_gateway(database_url, wait_timeout_s=wait_timeout_s)
    config = uvicorn.Config(
        gateway,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        if parent_pid is not None:
            asyncio.get_running_loop().create_task(_exit_with_parent(server, parent_pid))
        on_ready()
        await server.serve()

    asyncio.run(main())


async def _exit_with_parent(server: object, parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(0.5)
    server.should_exit = True  # type: ignore[attr-defined]


def spawn_gateway(
    database_url: str, *, host: str, port: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """``mosu up``'s gateway: a process of its own (its own interpreter lock, so proxying
    never waits on scheduling), ending when the server does."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
    env = {**os.environ, "MOSU_GATEWAY_DATABASE_URL": database_url}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mosu.cli.main",
            "gateway",
            "--host",
            host,
            "--port",
            str(port),
            "--parent-pid",
            str(os.getpid()),
        ],
        env=env,
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
    )
