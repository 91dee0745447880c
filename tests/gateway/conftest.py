"""A real ``mosu up`` with its gateway; model services run ``mosu mock-llm`` replicas."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mosu.client import Client
from mosu.client.services import ServicesApi
from mosu.core.api import QuotaSpec
from mosu.core.service_api import KeyCreate
from tests.e2e.conftest import OPERATOR_TOKEN, Server, free_port, make_server, wait_for
from tests.gateway.procs import SRC

__all__ = ["OPERATOR_TOKEN", "Platform", "make_server", "platform"]


def mock_service(name: str, model: str, *mock_args: str, **fields: Any) -> dict[str, Any]:
    """A service spec whose replicas are ``mosu mock-llm`` on ``$PORT``."""
    spec: dict[str, Any] = {
        "kind": "service",
        "name": name,
        "model": model,
        "command": [
            sys.executable,
            "-m",
            "mosu.cli.main",
            "mock-llm",
            "--model",
            model,
            *mock_args,
        ],
        "env": {"PYTHONPATH": SRC},
        "gpus": 1,
        "readiness": {"path": "/health", "timeout": 60},
        "drain_grace": 10,
    }
    spec.update(fields)
    return spec


@dataclass
class Platform:
    server: Server
    gateway_port: int
    tokens: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/v1"

    def client(self, tenant: str | None = None) -> Client:
        return self.server.client(self.tokens[tenant] if tenant else OPERATOR_TOKEN)

    def services(self, tenant: str | None = None) -> tuple[Client, ServicesApi]:
        c = self.client(tenant)
        return c, ServicesApi(c)

    def key(self, tenant: str, *models: str, rpm: int | None = None, tpm: int | None = None) -> str:
        with self.client(tenant) as c:
            out = ServicesApi(c).create_key(KeyCreate(models=list(models), rpm=rpm, tpm=tpm))
        assert out.key is not None
        return out.key

    def wait_ready(self, tenant: str, name: str, count: int, timeout: float = 40.0) -> None:
        with self.client(tenant) as c:
            api = ServicesApi(c)
            wait_for(
                lambda: api.show(name).ready >= count,
                timeout=timeout,
                what=f"{count} ready replicas of {name}",
                every=0.2,
            )


@pytest.fixture
def platform(make_server: Callable[..., Server]) -> Platform:
    port = free_port()
    server = make_server(
        "--gpus",
        "4",
        "--gpu-type",
        "H800",
        "--sandbox",
        "none",
        "--grace",
        "5",
        "--min-runtime",
        "0",
        "--gateway-port",
        str(port),
        env={"MOSU_TICK_S": "0.25"},
    )
    tokens = {}
    with server.client() as op:
        tokens["acme"] = op.create_tenant("acme", {"H800": QuotaSpec(guaranteed=2, limit=4)}).token
        tokens["beta"] = op.create_tenant("beta", {"H800": QuotaSpec(guaranteed=2, limit=4)}).token
    p = Platform(server, port, tokens)
    import httpx

    wait_for(
        lambda: _answers(httpx, f"http://127.0.0.1:{port}/health"), timeout=20, what="the gateway"
    )
    return p


def _answers(httpx: Any, url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
