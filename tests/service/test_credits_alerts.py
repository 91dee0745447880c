"""Credit threshold alerts: 80 % and 100 % once each, as events a tenant sees, and to a
real local webhook receiver that fails twice before it accepts (retried, signed)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from mosu.service.app import create_app
from mosu.service.services.credits_alerts import CreditAlert, WebhookSender
from tests.service.conftest import OPERATOR_TOKEN, bearer, open_platform, seed, submit

SECRET = "s3cret"


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers 500 to the first ``fail`` requests."""

    def __init__(self, fail: int) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = 500 if len(receiver.received) <= receiver.fail else 204
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_webhook_is_retried_with_backoff_and_signed():
    receiver = Receiver(fail=2)
    slept: list[float] = []
    sender = WebhookSender(receiver.url, SECRET, delays_s=(0.01, 0.02, 0.04), sleep=slept.append)
    try:
        sender.send([CreditAlert("acme", 80, 3.0, 0.6, 1_800_000_000.0)])
        _wait(lambda: sender.delivered == 1)
    finally:
        sender.close()
        receiver.close()
    assert slept == [0.01, 0.02]  # two failures, two growing waits, then accepted
    assert len(receiver.received) == 3
    headers, body = receiver.received[-1]
    mac = hmac.new(SECRET.encode(), headers["X-Mosu-Timestamp"].encode() + b"." + body, "sha256")
    assert headers["X-Mosu-Signature"] == "sha256=" + mac.hexdigest()
    assert json.loads(body)["threshold_percent"] == 80
    forged = hmac.new(b"other", body, hashlib.sha256).hexdigest()
    assert headers["X-Mosu-Signature"] != "sha256=" + forged


def test_thresholds_fire_once_each_as_events_and_to_the_webhook(tmp_path, executor):
    from fastapi.testclient import TestClient

    receiver = Receiver(fail=1)
    platform = open_platform(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'mosu.db'}",
        executor,
        grace_s=0.1,
        min_runtime_s=0,
        credits_webhook_url=receiver.url,
        credits_webhook_secret=SECRET,
    )
    platform.webhook._delays = (0.01,) * 5
    try:
        with TestClient(create_app(platform)) as api:
            api.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
            tokens = seed(api)
            api.post("/v1/rates", json={"rates": [{"resource": "H800", "per_hour": 3600 * 100}]})
            api.post("/v1/credits/grants", json={"tenant": "a", "amount": 100})
            job = submit(api, tokens["a"], gpus=1, estimate=1)
            platform.loop.run_once()
            assert job["id"] in executor.launched  # its estimate (100 credits) fits
            began = time.monotonic()
            while time.monotonic() - began < 1.3:  # 100 credits a second: 100 last 1 s
                time.sleep(0.02)
                platform.loop.meter_credits(force=True)
            executor.exit(job["id"], 0)
            platform.loop.run_once()
            platform.loop.meter_credits(force=True)
            events = api.get("/v1/events", headers=bearer(tokens["a"])).json()["events"]
            seen = [e["reason"] for e in events if e["kind"] == "credits-alert"]
            assert seen == ["credits-80", "credits-100"]
            others = api.get("/v1/events", headers=bearer(tokens["b"])).json()["events"]
            assert not [e for e in others if e["kind"] == "credits-alert"]
            _wait(lambda: platform.webhook.delivered == 2)
            # Another grant arms the thresholds again for the new amount.
            api.post("/v1/credits/grants", json={"tenant": "a", "amount": 1})
            platform.loop.meter_credits(force=True)
            events = api.get("/v1/events").json()["events"]
            assert [e["reason"] for e in events if e["kind"] == "credits-alert"] == [
                "credits-80",
                "credits-100",
                "credits-80",
                "credits-100",
            ]
    finally:
        platform.close()
        receiver.close()
    bodies = [json.loads(b) for _h, b in receiver.received]
    assert [b["threshold_percent"] for b in bodies][:3] == [80, 80, 100]  # the first retried
