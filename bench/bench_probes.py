"""Hostile-input probes against a real ``mosu`` server: tried, failed and 5xx per probe.

Starts the server as a subprocess on 127.0.0.1 (SQLite under a temporary data dir, and
PostgreSQL when ``MOSU_TEST_POSTGRES_URL`` names a server: a fresh database is created and
dropped), declares one 8-GPU node and two tenants, and sends what an attacker (or a careless
client) would: NUL in every kind of string field, a batch of good submissions with one
poisoned submission in it, cursors beyond a 32-bit and a 64-bit column, JSON and YAML nested
thousands deep, a boolean for a number, duplicate keys, a body that is not JSON, a method a
path does not have, a retried submission after a cut connection, and what a tenant needs
to manage its own credentials (a second token, a revocation).

Only plain HTTP is used, so the same script measures any version of the server (the "before"
column is this script run with an older checkout first on ``PYTHONPATH``). A probe *fails*
when the answer is not the documented one: a 4xx naming the field for bad input, 201 for
every good submission, one job for one retried submission. ``log lines`` counts what the
server wrote to its log while the probe ran.

Prints a table and a JSON object. ``--quick`` runs 2 rounds of the poison batch instead of 10.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchkit import free_port

TOKEN = "mosu_op_probe-operator-token"
NUL = "\x00"


class Server:
    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mosu.cli.main", "server", "--data-dir", str(data_dir)]
        cmd += ["--port", str(self.port), "--gpus", "8", "--gpu-type", "H800"]
        cmd += ["--grace", "1", "--node-name", "probe"]
        if database_url:
            cmd += ["--database-url", database_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
        env["MOSU_OPERATOR_TOKEN"] = TOKEN
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise SystemExit("server did not come up in 60 s")

    def log_lines(self) -> int:
        with self.log.open("rb") as f:
            return sum(1 for _ in f)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Result:
    probe: str
    tried: int = 0
    failed: int = 0
    server_errors: int = 0
    log_lines: int = 0
    notes: list[str] = field(default_factory=list)

    def check(self, ok: bool, response: httpx.Response | None, note: str) -> None:
        """One probe answered: ``ok`` if as documented; ``response`` None if none came."""
        self.tried += 1
        if response is not None and response.status_code >= 500:
            self.server_errors += 1
        if not ok:
            self.failed += 1
            if len(self.notes) < 3:
                shown = "no answer" if response is None else response.status_code
                self.notes.append(f"{note}: {shown}")


class _Unanswered(httpx.Client):
    """A client whose transport errors are answers too: ``None``, a failed probe. Every
    request on a connection of its own, so that a server closing a connection after a
    500 cannot fail the next probe."""

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        try:
            return super().request(*args, **kwargs)
        except httpx.HTTPError:
            return None


def client(url: str, token: str) -> httpx.Client:
    return _Unanswered(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def names_field(response: httpx.Response | None, status: int, field_name: str | None) -> bool:
    if response is None:
        return False
    if response.status_code != status:
        return False
    try:
        return response.json()["error"]["field"] == field_name
    except (ValueError, KeyError, TypeError):
        return False


def is_4xx(response: httpx.Response | None) -> bool:
    return response is not None and 400 <= response.status_code < 500


def status(response: httpx.Response | None) -> int | None:
    return None if response is None else response.status_code


class Probes:
    def __init__(self, server: Server, rounds: int) -> None:
        self.server = server
        self.rounds = rounds
        self.op = client(server.url, TOKEN)
        self.tokens: dict[str, str] = {}
        self.results: list[Result] = []

    def tenant(self, name: str) -> httpx.Client:
        return client(self.server.url, self.tokens[name])

    def seed(self) -> None:
        for name in ("acme", "beta"):
            r = self.op.post(
                "/v1/tenants", json={"name": name, "quotas": {"H800": {"guaranteed": 4}}}
            )
            r.raise_for_status()
            self.tokens[name] = r.json()["token"]

    def run(self, name: str, body: Callable[[Result], None]) -> None:
        result = Result(name)
        before = self.server.log_lines()
        try:
            body(result)
        except httpx.HTTPError as exc:  # the server cut the answer: that probe failed
            result.tried += 1
            result.failed += 1
            result.notes.append(f"{exc.__class__.__name__}: {exc}")
        time.sleep(0.2)  # let the server finish writing what the probe made it log
        result.log_lines = self.server.log_lines() - before
        self.results.append(result)

    # ------------------------------------------------------------ probes

    def nul_in_every_field(self, r: Result) -> None:
        job = {"name": "j", "command": ["true"], "gpus": 1}
        cases = [
            ("POST", "/v1/jobs", {**job, "name": f"x{NUL}"}, "name"),
            ("POST", "/v1/jobs", {**job, "command": f"echo {NUL}"}, "command"),
            ("POST", "/v1/jobs", {**job, "command": ["echo", f"a{NUL}"]}, "command[1]"),
            ("POST", "/v1/jobs", {**job, "env": {"A": f"a{NUL}"}}, "env.A"),
            ("POST", "/v1/jobs", {**job, "workdir": f"/tmp{NUL}"}, "workdir"),
            ("POST", "/v1/jobs", {**job, "gpu_type": f"H800{NUL}"}, "gpu_type"),
            ("POST", "/v1/jobs", {**job, "gpu_type": [f"H800{NUL}"]}, "gpu_type[0]"),
            ("POST", "/v1/jobs", {**job, "estimate": f"1h{NUL}"}, "estimate"),
            ("POST", "/v1/jobs", {**job, "memory": f"1Gi{NUL}"}, "memory"),
            ("POST", "/v1/jobs", {**job, "priority": f"high{NUL}"}, "priority"),
            (
                "POST",
                "/v1/tenants",
                {"name": "gamma", "quotas": {f"H800{NUL}": {"guaranteed": 1}}},
                "quotas.H800\\x00",
            ),
            ("POST", "/v1/tenants", {"name": f"g{NUL}"}, "name"),
            ("POST", "/v1/tenants", {"name": "gamma", "cohort": f"c{NUL}"}, "cohort"),
            ("PATCH", "/v1/tenants/acme", {"cohort": f"c{NUL}"}, "cohort"),
            (
                "PUT",
                "/v1/tenants/acme/quotas",
                {"quotas": {f"H{NUL}": {"guaranteed": 1}}},
                "quotas.H\\x00",
            ),
            ("POST", "/v1/nodes", {"name": "n9", "gpu_type": f"H{NUL}", "gpus": 1}, "gpu_type"),
            (
                "POST",
                "/v1/nodes",
                {"name": "n9", "gpu_type": "H800", "gpus": 1, "topology": f"z/r{NUL}"},
                "topology",
            ),
            (
                "POST",
                "/v1/nodes",
                {"name": "n9", "gpu_type": "H800", "gpus": 1, "memory": f"1Gi{NUL}"},
                "memory",
            ),
        ]
        for method, path, body, want in cases:
            params = {"tenant": "acme"} if path == "/v1/jobs" else None
            resp = self.op.request(method, path, json=body, params=params)
            r.check(names_field(resp, 422, want), resp, f"{method} {path} {want}")

    def poison_batches(self, r: Result) -> None:
        good = {"name": "good", "command": ["true"], "gpus": 1}
        bad = {"name": f"bad{NUL}", "command": ["true"], "gpus": 1}

        async def one_round(
            concurrent: httpx.AsyncClient,
        ) -> list[tuple[bool, httpx.Response | None]]:
            sends = []
            for k in range(39):
                params = {"tenant": ("acme", "beta")[k % 2]}
                sends.append((True, concurrent.post("/v1/jobs", json=good, params=params)))
            poisoned = concurrent.post("/v1/jobs", json=bad, params={"tenant": "acme"})
            sends.insert(17, (False, poisoned))
            answers = await asyncio.gather(*(send for _, send in sends), return_exceptions=True)
            return [
                (is_good, None if isinstance(a, BaseException) else a)
                for (is_good, _), a in zip(sends, answers, strict=True)
            ]

        async def all_rounds() -> None:
            limits = httpx.Limits(max_connections=40, max_keepalive_connections=0)
            async with httpx.AsyncClient(
                base_url=self.server.url,
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=60,
                limits=limits,
            ) as concurrent:
                for _ in range(self.rounds):
                    for is_good, resp in await one_round(concurrent):
                        ok = status(resp) == 201 if is_good else is_4xx(resp)
                        r.check(ok, resp, "good submission" if is_good else "poisoned one")

        asyncio.run(all_rounds())

    def events_cursor(self, r: Result) -> None:
        for after, want in ((2**31 - 1, 200), (2**31, 200), (2**63 - 1, 200), (2**63, 422)):
            resp = self.op.get("/v1/events", params={"after": after})
            ok = status(resp) == want and (want != 200 or resp.json()["events"] == [])  # type: ignore[union-attr]
            r.check(ok, resp, f"after={after}")

    def last_event_id(self, r: Result) -> None:
        for value, want in ((2**31, 200), (2**63 - 1, 200), (2**63, 422), (-1, 422)):
            resp = self.op.get(
                "/v1/events/stream",
                params={"wait_s": 0.3},
                headers={"Last-Event-ID": str(value)},
            )
            ok = status(resp) == want
            if want == 200:  # the whole stream arrived: it ended, it was not cut
                ok = ok and resp is not None and resp.text.startswith("retry:")
            r.check(ok, resp, f"Last-Event-ID {value}")

    def deep_json(self, r: Result) -> None:
        depth = 100_000
        nested = "[" * depth + "]" * depth
        for path, prefix in (
            ("/v1/jobs", '{"name": "x", "command": "true", "env": '),
            ("/v1/tenants", '{"name": "deep", "quotas": '),
        ):
            body = (prefix + nested + "}").encode()
            resp = self.op.post(
                path,
                content=body,
                params={"tenant": "acme"} if path == "/v1/jobs" else None,
                headers={"Content-Type": "application/json"},
            )
            r.check(status(resp) in (400, 413), resp, f"{path} nested {depth} deep")

    def deep_yaml(self, r: Result) -> None:
        depth = 5_000
        body = "name: x\ncommand: 'true'\nenv: " + "[" * depth + "]" * depth + "\n"
        resp = self.op.post(
            "/v1/jobs",
            content=body.encode(),
            params={"tenant": "acme"},
            headers={"Content-Type": "application/yaml"},
        )
        r.check(status(resp) == 400, resp, f"YAML nested {depth} deep")

    def strict_types(self, r: Result) -> None:
        with self.tenant("acme") as c:
            for value in (True, "2", None):
                body = {"name": "x", "command": ["true"], "gpus": value}
                resp = c.post("/v1/jobs", json=body)
                r.check(names_field(resp, 422, "gpus"), resp, f"gpus: {value!r}")
            resp = c.post(
                "/v1/jobs",
                content=b"name: x\ncommand: 'true'\ngpus: true\n",
                headers={"Content-Type": "application/yaml"},
            )
            r.check(names_field(resp, 422, "gpus"), resp, "YAML gpus: true")
            resp = c.post(
                "/v1/jobs",
                content=b'{"name": "x", "command": "true", "gpus": NaN}',
                headers={"Content-Type": "application/json"},
            )
            r.check(status(resp) == 400, resp, "gpus: NaN")

    def duplicate_keys(self, r: Result) -> None:
        with self.tenant("acme") as c:
            resp = c.post(
                "/v1/jobs",
                content=b"name: x\nname: y\ncommand: 'true'\n",
                headers={"Content-Type": "application/yaml"},
            )
            r.check(status(resp) == 400, resp, "duplicate YAML key")
            resp = c.post(
                "/v1/jobs",
                content=b'{"name": "x", "name": "y", "command": "true"}',
                headers={"Content-Type": "application/json"},
            )
            r.check(status(resp) == 400, resp, "duplicate JSON key")

    def media_types(self, r: Result) -> None:
        body = json.dumps({"name": "typed", "command": "true"}).encode()
        for path in ("/v1/jobs", "/v1/tenants"):
            for media in ("text/plain", "application/x-www-form-urlencoded"):
                resp = self.op.post(
                    path,
                    content=body,
                    params={"tenant": "acme"} if path == "/v1/jobs" else None,
                    headers={"Content-Type": media},
                )
                r.check(status(resp) == 415, resp, f"{path} as {media}")
        resp = self.op.post(
            "/v1/tenants",
            content=b"{" + b" " * (2 << 20) + b"}",
            headers={"Content-Type": "application/json"},
        )
        r.check(status(resp) == 413, resp, "2 MiB body")

    def methods(self, r: Result) -> None:
        for method, path, want in (
            ("DELETE", "/v1/jobs", {"GET", "POST"}),
            ("PUT", "/v1/queue", {"GET"}),
            ("DELETE", "/v1/nodes", {"GET", "POST"}),
        ):
            resp = self.op.request(method, path)
            header = "" if resp is None else resp.headers.get("allow", "")
            allow = {m.strip() for m in header.split(",") if m.strip()}
            r.check(status(resp) == 405 and allow == want, resp, f"{method} {path}")

    def retried_submission(self, r: Result) -> None:
        """A submission whose connection is cut once the request is sent, then sent again
        with the same key, as a client that did not hear the answer would."""
        name = f"retry-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"name": name, "command": ["true"], "gpus": 1}).encode()
        key = uuid.uuid4().hex
        host, port = "127.0.0.1", self.server.port
        request = (
            f"POST /v1/jobs HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {self.tokens['acme']}\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        with socket.create_connection((host, port)) as sock:
            sock.sendall(request)  # and hang up before the answer
        time.sleep(0.5)
        with self.tenant("acme") as c:
            resp = c.post(
                "/v1/jobs",
                content=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": key},
            )
            r.check(status(resp) == 201, resp, "the retry")
            listed = c.get("/v1/jobs", params={"limit": 10_000})
            jobs = listed.json()["jobs"] if listed is not None else []
        same = [j for j in jobs if j["name"] == name]
        r.check(len(same) == 1, None, f"{len(same)} jobs for one submission")

    def token_management(self, r: Result) -> None:
        with self.tenant("beta") as beta:
            resp = beta.post("/v1/tokens", json={"name": "ci", "expires_in": "30d"})
            r.check(status(resp) == 201, resp, "a second named token")
            if status(resp) != 201:
                r.check(False, None, "revocation (no token to revoke)")
                return
            issued = resp.json()  # type: ignore[union-attr]
            second = client(self.server.url, issued["token"])
            with second:
                resp = beta.delete(f"/v1/tokens/{issued['info']['id']}")
                r.check(status(resp) == 200, resp, "revoke")
                time.sleep(1.0)
                resp = second.get("/v1/jobs")
                r.check(status(resp) == 401, resp, "the revoked token")


def fresh_database(url: str) -> tuple[str, Callable[[], None]]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url).set(drivername="postgresql+psycopg")
    name = f"mosu_probe_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def run_backend(backend: str, database_url: str | None, rounds: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="mosu-probe-") as tmp:
        server = Server(Path(tmp), database_url)
        try:
            probes = Probes(server, rounds)
            probes.seed()
            for name, body in (
                ("NUL in every kind of string field", probes.nul_in_every_field),
                (f"poisoned batches ({rounds} x 39 good + 1 NUL)", probes.poison_batches),
                ("events cursor 2^31 / 2^63", probes.events_cursor),
                ("Last-Event-ID 2^31 / 2^63", probes.last_event_id),
                ("JSON nested 100,000 deep", probes.deep_json),
                ("YAML nested 5,000 deep", probes.deep_yaml),
                ("strict types (gpus: true, NaN)", probes.strict_types),
                ("duplicate keys", probes.duplicate_keys),
                ("body not JSON (415), too large (413)", probes.media_types),
                ("405 carries Allow", probes.methods),
                ("retry after a cut connection", probes.retried_submission),
                ("second token, revocation", probes.token_management),
            ):
                probes.run(name, body)
            return probes.results
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 poison rounds instead of 10")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="exit 0 even if a probe failed (to measure an older version)",
    )
    args = parser.parse_args()
    rounds = 2 if args.quick else 10
    backends: list[tuple[str, str | None, Callable[[], None]]] = [("sqlite", None, lambda: None)]
    pg = os.environ.get("MOSU_TEST_POSTGRES_URL")
    if pg:
        url, drop = fresh_database(pg)
        backends.append(("postgres", url, drop))
    out: dict[str, object] = {"rounds": rounds, "backends": {}}
    bad = 0
    lines = [f"{'backend':<9} {'probe':<44} {'tried':>5} {'failed':>6} {'5xx':>4} {'log lines':>9}"]
    for backend, url, cleanup in backends:
        try:
            results = run_backend(backend, url, rounds)
        finally:
            cleanup()
        out["backends"][backend] = [r.__dict__ for r in results]  # type: ignore[index]
        bad += sum(r.failed + r.server_errors for r in results)
        for r in results:
            lines.append(
                f"{backend:<9} {r.probe:<44} {r.tried:>5} {r.failed:>6} "
                f"{r.server_errors:>4} {r.log_lines:>9}"
            )
        lines.append(
            f"{backend:<9} {'total':<44} {sum(r.tried for r in results):>5} "
            f"{sum(r.failed for r in results):>6} {sum(r.server_errors for r in results):>4}"
        )
    print("\n".join(lines))
    print(json.dumps(out, indent=2))
    if bad and not args.report_only:
        raise SystemExit(f"{bad} probe answers were wrong or 5xx")


if __name__ == "__main__":
    main()
