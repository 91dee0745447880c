"""Through ``mosu up``'s gateway: per-key limits (429 + Retry-After), revocation, token
metering; scale from zero without a client retry, autoscaling on in-flight requests and a
drained scale-down; a replica killed with SIGKILL costs no non-streaming request."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import openai
import pytest

from mosu.client.services import ServicesApi
from mosu.service.autoscale import gauge_value
from tests.e2e.conftest import wait_for
from tests.gateway.conftest import Platform, mock_service

pytestmark = pytest.mark.timeout(240)


def test_limits_revocation_and_metering(platform: Platform) -> None:
    with platform.client("acme") as c:
        ServicesApi(c).create(mock_service("lim", "acme-lim", "--max-tokens", "5"))
    platform.wait_ready("acme", "lim", 1)
    key = platform.key("acme", "acme-lim", rpm=3)
    url = platform.base_url + "/completions"
    auth = {"authorization": f"Bearer {key}"}
    body = {"model": "acme-lim", "prompt": "one two three"}
    codes = [httpx.post(url, json=body, headers=auth, timeout=10).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    limited = httpx.post(url, json=body, headers=auth, timeout=10)
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(limited.headers["retry-after"]) <= 60

    # A streamed answer without usage is metered by counting its chunks.
    streamed = platform.key("acme", "acme-lim", tpm=1000)
    with openai.OpenAI(base_url=platform.base_url, api_key=streamed, max_retries=0) as client:
        chunks = list(client.completions.create(model="acme-lim", prompt="a b", stream=True))
    assert len(chunks) == 5

    with platform.client("acme") as c:
        api = ServicesApi(c)

        def metered() -> list:
            return [u for u in api.key_usage() if u.model == "acme-lim"]

        usage = wait_for(lambda: len(metered()) == 2 and metered(), timeout=10, what="metering")
        by_key = {u.key_id: u for u in usage}
        keys = {k.prefix: k.id for k in api.list_keys()}
        first = by_key[keys[key[:12]]]
        assert (first.requests, first.prompt_tokens, first.completion_tokens) == (3, 9, 15)
        second = by_key[keys[streamed[:12]]]
        assert (second.requests, second.prompt_tokens, second.completion_tokens) == (1, 2, 5)
        assert first.owner == "acme"

        api.revoke_key(keys[streamed[:12]])
    with openai.OpenAI(base_url=platform.base_url, api_key=streamed, max_retries=0) as client:

        def refused() -> bool:
            try:
                client.completions.create(model="acme-lim", prompt="x")
            except openai.AuthenticationError:
                return True
            return False

        wait_for(refused, timeout=5, what="the revoked key refused")


def test_scale_from_zero_autoscale_and_drain_lose_nothing(platform: Platform) -> None:
    spec = mock_service(
        "auto",
        "acme-auto",
        "--ttft",
        "0.2",
        "--itl",
        "0.1",
        "--max-tokens",
        "10",
        "--startup-delay",
        "0.5",
        replicas={"min": 0, "max": 2},
        scaling={"target_inflight": 2, "up_delay": 1, "down_delay": 3},
    )
    with platform.client("acme") as c:
        api = ServicesApi(c)
        api.create(spec)
        assert api.show("auto").desired == 0
    key = platform.key("acme", "acme-auto")
    with openai.OpenAI(base_url=platform.base_url, api_key=key, max_retries=0) as client:
        # At zero: the first request waits for a replica and succeeds, no client retry.
        first = client.completions.create(model="acme-auto", prompt="wake up")
        assert len(first.choices[0].text.split()) == 10

        failures: list[str] = []
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                try:
                    client.completions.create(model="acme-auto", prompt="busy")
                except Exception as exc:  # every failure counts
                    failures.append(repr(exc))

        workers = [threading.Thread(target=load) for _ in range(6)]
        for w in workers:
            w.start()
        try:
            with platform.client("acme") as c:
                api = ServicesApi(c)
                wait_for(lambda: api.show("auto").ready == 2, timeout=40, what="scaled to 2")
        finally:
            done.set()
            for w in workers:
                w.join(30)
        # Idle: after the down delay the replicas drain and stop (min is 0).
        with platform.client("acme") as c:
            api = ServicesApi(c)
            wait_for(lambda: api.show("auto").desired == 0, timeout=20, what="scaled down")
            wait_for(lambda: not api.show("auto").replicas, timeout=20, what="replicas gone")
        assert failures == []


def test_a_killed_replica_costs_no_non_streaming_request(platform: Platform) -> None:
    spec = mock_service(
        "kill", "acme-kill", "--ttft", "0.05", "--max-tokens", "3", replicas={"min": 2, "max": 2}
    )
    with platform.client("acme") as c:
        ServicesApi(c).create(spec)
    platform.wait_ready("acme", "kill", 2)
    key = platform.key("acme", "acme-kill")
    failures: list[str] = []
    served = [0]
    done = threading.Event()
    with openai.OpenAI(base_url=platform.base_url, api_key=key, max_retries=0) as client:

        def load() -> None:
            while not done.is_set():
                try:
                    client.completions.create(model="acme-kill", prompt="steady")
                    served[0] += 1
                except Exception as exc:
                    failures.append(repr(exc))

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        try:
            time.sleep(1.0)
            with platform.client("acme") as c:
                victim = ServicesApi(c).show("kill").replicas[0]
                port = victim.endpoint.rsplit(":", 1)[1]
            pid = _listener_pid(int(port))
            os.kill(pid, signal.SIGKILL)
            with platform.client("acme") as c:
                api = ServicesApi(c)
                wait_for(
                    lambda: (
                        api.show("kill").ready == 2
                        and victim.job_id not in {r.job_id for r in api.show("kill").replicas}
                    ),
                    timeout=40,
                    what="the killed replica replaced",
                )
            time.sleep(0.5)
        finally:
            done.set()
            for w in workers:
                w.join(30)
    assert failures == []
    assert served[0] > 20
    # The kill was felt: requests it caught before their first byte went elsewhere.
    metrics = httpx.get(f"http://127.0.0.1:{platform.gateway_port}/metrics").text
    assert gauge_value(metrics, "mosu_gateway_retries_total") >= 1
    assert gauge_value(metrics, "mosu_gateway_cut_streams_total") == 0


def _listener_pid(port: int) -> int:
    """The process listening on 127.0.0.1:port (from /proc, no tools needed)."""
    hexport = f"{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(":" + hexport) and parts[3] == "0A":
                    inodes.add(parts[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise LookupError(f"nothing listens on {port}")


def test_streams_cut_by_a_kill_are_counted(platform: Platform) -> None:
    spec = mock_service(
        "cut", "acme-cut", "--itl", "0.2", "--max-tokens", "50", replicas={"min": 1, "max": 1}
    )
    with platform.client("acme") as c:
        ServicesApi(c).create(spec)
    platform.wait_ready("acme", "cut", 1)
    key = platform.key("acme", "acme-cut")
    got: list[str] = []
    errors: list[str] = []
    with openai.OpenAI(base_url=platform.base_url, api_key=key, max_retries=0) as client:

        def stream() -> None:
            try:
                for chunk in client.completions.create(model="acme-cut", prompt="x", stream=True):
                    got.append(chunk.choices[0].text if chunk.choices else "")
            except Exception as exc:  # a cut stream may end early or in error
                errors.append(repr(exc))

        reader = threading.Thread(target=stream)
        reader.start()
        wait_for(lambda: len(got) >= 3, timeout=20, what="the stream under way")
        with platform.client("acme") as c:
            port = int(ServicesApi(c).show("cut").replicas[0].endpoint.rsplit(":", 1)[1])
        os.kill(_listener_pid(port), signal.SIGKILL)
        reader.join(30)
    assert 3 <= len(got) < 50
    metrics = httpx.get(f"http://127.0.0.1:{platform.gateway_port}/metrics").text
    assert gauge_value(metrics, "mosu_gateway_cut_streams_total") == 1
