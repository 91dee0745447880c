"""Server entry point: open the store, register the local node, start the scheduler
process, serve HTTP from this process or from ``workers`` worker processes."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import FastAPI

from mosu.core.api import NodeCreate
from mosu.core.errors import Conflict
from mosu.service.app import create_app
from mosu.service.platform import Platform
from mosu.service.scheduler_link import new_server_id
from mosu.service.scheduler_process import SchedulerProcess
from mosu.service.services import nodes
from mosu.service.services.auth import OPERATOR
from mosu.service.settings import Settings


def instance_id(settings: Settings) -> str:
    """A stable name for the store this server runs on (tags the processes it starts)."""
    return hashlib.sha256(settings.sqlalchemy_url.encode()).hexdigest()[:16]


def _check_port(host: str, port: int) -> None:
    """Fail with one line before anything is printed or saved if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise Conflict(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port"
            ) from None


def freeze_startup_objects() -> None:
    """Leave what the process loaded at start (modules, the app, its caches) out of
    every later garbage collection: a full collection then walks only what requests
    made, ~1 ms instead of ~100 ms on the dashboard's pages with a large store."""
    gc.collect()
    gc.freeze()


SETTINGS_ENV = "MOSU_WORKER_SETTINGS"
"""How ``serve`` hands its settings to the API worker processes uvicorn starts."""


def serve(
    settings: Settings,
    scheduler: SchedulerProcess,
    *,
    workers: int = 1,
    local_nodes: Sequence[NodeCreate] = (),
    sandbox: str = "none",
    on_ready: Callable[[str | None], None] = lambda _token: None,
) -> None:
    """Run until SIGINT/SIGTERM: the scheduler in its own process (``scheduler``,
    supervised and restarted), the API in this one (``workers`` 1) or in ``workers``
    processes sharing the port. Running replicas are left running on the way out (their
    supervisors outlive the server) and the next server adopts them.

    ``on_ready`` gets the operator token if this start created it (None otherwise)."""
    _check_port(settings.host, settings.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    new_server_id()  # named before any process starts, so all of them share it
    platform = Platform(settings, None)
    token = platform.open()
    if local_nodes:
        with platform.tx() as s:
            for node in local_nodes:
                nodes.register_node(s, principal=OPERATOR, body=node)
                nodes.report_sandbox(s, name=node.name, sandbox=sandbox)
    scheduler.start()
    try:
        config = dict(
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        if workers <= 1:
            app = create_app(platform)
            freeze_startup_objects()
            server = uvicorn.Server(uvicorn.Config(app, **config))  # type: ignore[arg-type]
            on_ready(token)
            server.run()
        else:
            os.environ[SETTINGS_ENV] = settings.model_dump_json()
            on_ready(token)
            uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **config)  # type: ignore[arg-type]
    finally:
        scheduler.stop()
        platform.close()


def worker_app() -> FastAPI:
    """One API worker of ``serve(workers=N)``: the settings come from the environment."""
    settings = Settings(**json.loads(os.environ[SETTINGS_ENV]))
    platform = Platform(settings, None)
    platform.open()
    app = create_app(platform)
    freeze_startup_objects()
    return app
