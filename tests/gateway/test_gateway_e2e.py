"""Through ``mosu up``'s gateway with the official ``openai`` client: routing by model to
ready replicas, streaming, bad input in OpenAI's error format, tenants kept apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from mosu.service.autoscale import gauge_value
from tests.e2e.conftest import OPERATOR_TOKEN, wait_for
from tests.gateway.conftest import Platform, mock_service
from tests.gateway.procs import SRC, free_port, wait_http

pytestmark = pytest.mark.timeout(180)


def test_routes_streams_and_refuses_bad_input(platform: Platform) -> None:
    with platform.client("acme") as c:
        from mosu.client.services import ServicesApi

        api = ServicesApi(c)
        api.create(
            mock_service("chat", "acme-chat", "--max-tokens", "6", replicas={"min": 2, "max": 2})
        )
    platform.wait_ready("acme", "chat", 2)
    key = platform.key("acme", "acme-chat")
    with openai.OpenAI(base_url=platform.base_url, api_key=key, max_retries=0) as client:
        _calls(platform, client, key)


def _calls(platform: Platform, client: openai.OpenAI, key: str) -> None:
    answer = client.chat.completions.create(
        model="acme-chat", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert len(answer.choices[0].message.content.split()) == 6
    assert answer.usage is not None and answer.usage.prompt_tokens == 2

    pieces = []
    for chunk in client.chat.completions.create(
        model="acme-chat", messages=[{"role": "user", "content": "hello gateway"}], stream=True
    ):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
    # The same deterministic answer, whether streamed or not, from either replica.
    assert "".join(pieces) == answer.choices[0].message.content
    assert [m.id for m in client.models.list()] == ["acme-chat"]
    emb = client.embeddings.create(model="acme-chat", input="x y")
    assert len(emb.data[0].embedding) == 8

    # Both replicas serve: with no request open anywhere, turns go round the replicas.
    with platform.client("acme") as c:
        from mosu.client.services import ServicesApi

        shown = ServicesApi(c).show("chat")
    assert shown.ready == 2
    ports = {r.endpoint for r in shown.replicas}
    served = [
        gauge_value(httpx.get(p + "/metrics").text, "mock_requests_served_total") for p in ports
    ]
    assert sorted(served) == [1, 2], served

    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"

    url = platform.base_url + "/chat/completions"
    auth = {"authorization": f"Bearer {key}"}
    bad = httpx.post(url, content=b"{not json", headers=auth)
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    big = httpx.post(url, content=b"{" + b" " * (2 << 20) + b"}", headers=auth)
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "too_large"
    no_key = httpx.post(url, json={"model": "acme-chat", "messages": []})
    assert no_key.status_code == 401


def test_a_tenant_key_cannot_call_another_tenants_private_model(platform: Platform) -> None:
    from mosu.client.services import ServicesApi

    with platform.client("acme") as c:
        ServicesApi(c).create(mock_service("priv", "acme-private"))
    platform.wait_ready("acme", "priv", 1)
    beta_key = platform.key("beta", "*")
    with openai.OpenAI(base_url=platform.base_url, api_key=beta_key, max_retries=0) as client:
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="acme-private", prompt="hi")
        assert [m.id for m in client.models.list()] == []
    # Naming it in a new key is refused the same way: the model is not even named.
    with platform.client("beta") as c:
        from mosu.core.errors import NotFound
        from mosu.core.service_api import KeyCreate

        with pytest.raises(NotFound):
            ServicesApi(c).create_key(KeyCreate(models=["acme-private"]))


def _mosu(platform: Platform, tenant: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        "MOSU_URL": platform.server.url,
        "MOSU_TOKEN": platform.tokens[tenant] if tenant else OPERATOR_TOKEN,
    }
    return subprocess.run(
        [sys.executable, "-m", "mosu.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_serves_a_model_and_makes_a_key(platform: Platform, tmp_path: Path) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text(yaml.safe_dump(mock_service("cli", "acme-cli", "--max-tokens", "3")))
    made = _mosu(platform, "acme", "service", "create", str(spec))
    assert made.returncode == 0, made.stderr
    assert "acme-cli" in made.stdout
    platform.wait_ready("acme", "cli", 1)
    shown = _mosu(platform, "acme", "service", "list")
    assert "acme-cli" in shown.stdout and "1/1" in shown.stdout
    created = _mosu(
        platform, "acme", "key", "create", "--model", "acme-cli", "--rpm", "5", "--output", "json"
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("mosu_sk_") and key["rpm"] == 5
    with openai.OpenAI(base_url=platform.base_url, api_key=key["key"], max_retries=0) as client:
        assert client.completions.create(model="acme-cli", prompt="hi").choices[0].text
    listed = _mosu(platform, "acme", "key", "list")
    assert key["prefix"] in listed.stdout and key["key"] not in listed.stdout
    assert _mosu(platform, "acme", "key", "revoke", str(key["id"])).returncode == 0
    # Bad input: one line naming the field, non-zero exit, no traceback.
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: service\nname: x\nmodel: m\ncommand: [x]\nreplicas: {min: 3, max: 1}\n")
    refused = _mosu(platform, "acme", "service", "create", str(bad))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "replicas" in refused.stderr
    approve = _mosu(platform, "acme", "service", "approve", "cli")
    assert approve.returncode == 2 and "operator" in approve.stderr


def test_a_gateway_of_its_own_over_the_same_store(platform: Platform) -> None:
    with platform.client("acme") as c:
        from mosu.client.services import ServicesApi

        ServicesApi(c).create(mock_service("solo", "acme-solo", "--max-tokens", "2"))
    platform.wait_ready("acme", "solo", 1)
    key = platform.key("acme", "acme-solo")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mosu.cli.main",
            "gateway",
            "--data-dir",
            str(platform.server.data_dir),
            "--port",
            str(port),
        ],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"gateway is up at http://127.0.0.1:{port}/v1"
        wait_http(f"http://127.0.0.1:{port}/health")
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0
        ) as client:
            answer = client.completions.create(model="acme-solo", prompt="alone")
        assert len(answer.choices[0].text.split()) == 2
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()


def test_no_ready_replica_in_time_is_503_with_retry_after(platform: Platform) -> None:
    # Replicas that never listen: the request waits for one, then gives up.
    spec = mock_service("deaf", "acme-deaf", replicas={"min": 0, "max": 1})
    spec["command"] = ["sleep", "120"]
    with platform.client("acme") as c:
        from mosu.client.services import ServicesApi

        ServicesApi(c).create(spec)
    key = platform.key("acme", "acme-deaf")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "mosu.cli.main", "gateway"),
            *("--data-dir", str(platform.server.data_dir), "--port", str(port)),
            *("--wait-timeout", "1.5"),
        ],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/completions",
            json={"model": "acme-deaf", "prompt": "anyone?"},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "model_starting"
        assert int(reply.headers["retry-after"]) >= 1
        # Its wait counted as load: the service was asked for a replica (by the
        # controller's next step, which a busy machine may run after the answer).
        with platform.client("acme") as c:
            from mosu.client.services import ServicesApi

            wait_for(
                lambda: ServicesApi(c).show("deaf").desired == 1,
                timeout=30,
                what="the service to be asked for a replica",
            )
    finally:
        proc.terminate()
        proc.wait(15)
