"""The gateway: an OpenAI-compatible front for every model service.

``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` go to a ready replica
of the service named by the body's ``model``, the one with the fewest requests open
(least outstanding requests first); ``/v1/models`` lists what the caller's key may call.
A request that fails before its first byte reaches the client (connection refused or
reset, the replica answering 503) is sent to another replica; streamed answers (SSE) are
passed on chunk by chunk as they arrive, never buffered. While a service has no ready
replica (scaled to zero, or all replaced), requests wait for one up to ``wait_timeout_s``,
then get 503 with ``Retry-After``. Errors use OpenAI's format: ``{"error": {message,
type, param, code}}``.

A raw ASGI app, not a framework's: the gateway's own cost is on every call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mosu.gateway.limits import KeyLimits, retry_after
from mosu.gateway.meter import ChargeHook, Meter
from mosu.gateway.routing import (
    Key,
    Replica,
    Route,
    RouteTable,
    key_by_hash,
    load_table,
    report_load,
)
from mosu.gateway.upstream import Upstream, UpstreamError

log = logging.getLogger("mosu.gateway")
MAX_BODY_BYTES = 1 << 20
FORWARDED = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
SUSPECT_S = 2.0
"""A replica that refused a connection is skipped this long (its job may be ending)."""
LOAD_REPORT_S = 2.0
GAVE_UP_HOLD_S = 60.0
"""A request that gave up waiting for a replica counts as one in flight on its service
this long: the autoscaler may read the load only after the wait is over (a report or
a controller step late on a busy machine), and a request that found no replica is the
demand that must start one. Knative keeps a revision up for its 60 s stable window
after a request for the same reason."""


@dataclass(slots=True)
class GatewayStats:
    requests: int = 0
    retries: int = 0
    cut_streams: int = 0
    """Streams a replica's failure ended after their first byte: cannot be retried."""
    timeouts: int = 0
    by_status: dict[int, int] = field(default_factory=lambda: defaultdict(int))


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.code, self.param, self.headers = code, param, headers or []

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _bearer_hash(scope: dict[str, Any]) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return _hash(token.strip())
    return None


def prompt_words(payload: dict[str, Any]) -> int:
    """Prompt size in whitespace words, when a streamed answer brings no ``usage``."""
    if isinstance(payload.get("messages"), list):
        total = 0
        for m in payload["messages"]:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                total += len(content.split())
        return total
    prompt = payload.get("prompt", payload.get("input", ""))
    if isinstance(prompt, list):
        return sum(len(str(p).split()) for p in prompt)
    return len(str(prompt).split())


class StreamTally:
    """Reads SSE as it passes: ``usage`` if the server sends it, else one token per
    chunk that carries text. Parses only complete ``data:`` lines."""

    def __init__(self) -> None:
        self._tail = b""
        self.usage: dict[str, Any] | None = None
        self.chunks = 0
        self.bytes = 0

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            raw = line[5:].strip()
            if raw == b"[DONE]" or not raw:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if isinstance(event.get("usage"), dict):
                self.usage = event["usage"]
            for choice in event.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if text:
                    self.chunks += 1


def _usage_tokens(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens", 0)
    if isinstance(prompt, int) and isinstance(completion, int | None):
        return prompt, completion or 0
    return None


AuditHook = Callable[[Route, int, int, int, dict[str, Any]], None]


class Gateway:
    """The ASGI app and the state behind it: the route table, open requests, limits."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        refresh_s: float = 0.25,
        wait_timeout_s: float = 60.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.time,
        charge: ChargeHook | None = None,
    ) -> None:
        self.sessions = sessions
        self.refresh_s = refresh_s
        self.wait_timeout_s = wait_timeout_s
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.table = RouteTable()
        self.limits = KeyLimits()
        self.meter = Meter(sessions, on_flush=charge)
        self.stats = GatewayStats()
        self.open_by_replica: dict[int, int] = defaultdict(int)
        self.open_by_service: dict[int, int] = defaultdict(int)
        self.waiting_by_service: dict[int, int] = defaultdict(int)
        self.on_audit: AuditHook | None = None
        self.flush_hooks: list[Callable[[], Callable[[Session], None]]] = []
        """Called on the event loop at each refresh; what each returns writes in the
        refresh's transaction (the showcase stores its audit records so)."""
        self._suspect: dict[int, float] = {}
        self._fresh_keys: dict[str, Key] = {}
        self._turn = 0
        self._missed: dict[str, float] = {}
        self._missed_models: dict[str, float] = {}
        self._table_read_at = 0.0
        self._changed: asyncio.Event | None = None
        self._upstream: Upstream | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._reported: dict[int, tuple[int, int]] = {}
        self._reported_at = 0.0
        self._gave_up: dict[int, float] = {}
        """Service id → when a request last gave up waiting for its first replica."""
        self.extra_routes: dict[tuple[str, str], Any] = {}
        """(method, path) → ASGI app: the showcase mounts its page and try-it here."""

    def metrics_text(self) -> str:
        """The gateway's counters in Prometheus text format."""
        st = self.stats
        lines = [
            "# TYPE mosu_gateway_requests_total counter",
            f"mosu_gateway_requests_total {st.requests}",
            "# HELP mosu_gateway_retries_total Requests sent to another replica after a"
            " failure before their first byte.",
            "# TYPE mosu_gateway_retries_total counter",
            f"mosu_gateway_retries_total {st.retries}",
            "# HELP mosu_gateway_cut_streams_total Streams a replica's failure ended after"
            " their first byte.",
            "# TYPE mosu_gateway_cut_streams_total counter",
            f"mosu_gateway_cut_streams_total {st.cut_streams}",
            "# TYPE mosu_gateway_wait_timeouts_total counter",
            f"mosu_gateway_wait_timeouts_total {st.timeouts}",
            "# TYPE mosu_gateway_responses_total counter",
        ]
        lines += [
            f'mosu_gateway_responses_total{{status="{code}"}} {n}'
            for code, n in sorted(st.by_status.items())
        ]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        self._changed = asyncio.Event()
        self._upstream = Upstream()
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def shutdown(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._upstream is not None:
            self._upstream.close()
        try:
            await self.refresh()  # the last metered tokens and audit records
        except Exception:
            log.exception("final flush failed")

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception:  # the store may be busy for a moment; keep the last table
                log.exception("route refresh failed")

    async def refresh(self) -> None:
        """Read the table, report load, flush the meter (off the event loop)."""
        services = {
            r.service_id: (
                self.open_by_service.get(r.service_id, 0)
                + self.waiting_by_service.get(r.service_id, 0),
                self.waiting_by_service.get(r.service_id, 0),
            )
            for r in self.table.routes.values()
        }
        now = self.clock()
        for sid, at in list(self._gave_up.items()):
            if now - at >= GAVE_UP_HOLD_S:
                del self._gave_up[sid]
            elif sid in services:
                inflight, waiting = services[sid]
                services[sid] = (max(inflight, 1), max(waiting, 1))
        replicas = {
            rid: n
            for route in self.table.routes.values()
            for rid, n in ((r.id, self.open_by_replica.get(r.id, 0)) for r in route.replicas)
        }
        replicas.update({rid: n for rid, n in self.open_by_replica.items() if n == 0})
        report = services != self._reported or now - self._reported_at >= LOAD_REPORT_S
        # Taken here, on the loop that adds to them; written off it.
        batch = self.meter.take()
        writers = [hook() for hook in self.flush_hooks]
        table, stored = await asyncio.get_running_loop().run_in_executor(
            None, self._sync_refresh, now, services if report else None, replicas, writers, batch
        )
        if not stored:
            self.meter.merge(batch)
        if report:
            self._reported, self._reported_at = services, now
        for rid in [r for r, n in self.open_by_replica.items() if n == 0]:
            del self.open_by_replica[rid]
        old, self.table = self.table, table
        self._fresh_keys = {}
        if old != table and self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _sync_refresh(
        self,
        now: float,
        services: dict[int, tuple[int, int]] | None,
        replicas: dict[int, int],
        writers: list[Callable[[Session], None]],
        batch: dict[tuple[int, int, str, str], list[int]],
    ) -> tuple[RouteTable, bool]:
        with self.sessions.begin() as s:
            if services is not None:
                report_load(s, now=now, services=services, replicas=replicas)
            for write in writers:
                write(s)
            table = load_table(s)
        return table, self.meter.store(batch)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        extra = self.extra_routes.get((method, path))
        if extra is not None:
            await extra(scope, receive, send)
            return
        try:
            if method == "POST" and path in FORWARDED:
                await self._forward(scope, receive, send, path)
            elif method == "GET" and path == "/v1/models":
                await self._models(scope, send)
            elif method == "GET" and path == "/health":
                await _send(send, 200, b'{"status":"ok"}')
            elif method == "GET" and path == "/metrics":
                await _send(
                    send,
                    200,
                    self.metrics_text().encode(),
                    content_type=b"text/plain; version=0.0.4",
                )
            elif path in FORWARDED or path == "/v1/models":
                raise OpenAIError(
                    405, f"{method} is not allowed on {path}", code="method_not_allowed"
                )
            else:
                raise OpenAIError(404, f"no route {path}", code="not_found")
        except OpenAIError as exc:
            self.stats.by_status[exc.status] += 1
            await _send(send, exc.status, exc.body(), exc.headers)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ checks

    def authenticate(self, scope: dict[str, Any]) -> Key:
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise OpenAIError(
                401,
                "give an API key: Authorization: Bearer KEY (mosu key create)",
                kind="authentication_error",
                code="invalid_api_key",
            )
        digest = _hash(token.strip())
        key = self.table.keys.get(digest) or self._fresh_keys.get(digest)
        if key is None:
            raise OpenAIError(
                401,
                "unknown or revoked API key",
                kind="authentication_error",
                code="invalid_api_key",
            )
        return key

    async def authenticate_fresh(self, scope: dict[str, Any]) -> Key:
        """``authenticate``, looking a key created since the last refresh up in the store
        (a client may use a key the moment it has it); misses are remembered a second."""
        try:
            return self.authenticate(scope)
        except OpenAIError as exc:
            digest = _bearer_hash(scope)
            if digest is None or self._missed.get(digest, 0) > time.monotonic():
                raise exc from None
            key = await asyncio.get_running_loop().run_in_executor(None, self._lookup_key, digest)
            if key is None:
                if len(self._missed) > 10_000:
                    self._missed.clear()
                self._missed[digest] = time.monotonic() + 1.0
                raise exc from None
            self._fresh_keys[digest] = key
            return key

    def _lookup_key(self, digest: str) -> Key | None:
        with self.sessions.begin() as s:
            return key_by_hash(s, digest)

    async def _read_json(self, scope: dict[str, Any], receive: Any) -> tuple[bytes, dict[str, Any]]:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                raise OpenAIError(
                    413, f"the body is over {self.max_body_bytes} bytes", code="too_large"
                )
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise OpenAIError(
                    413, f"the body is over {self.max_body_bytes} bytes", code="too_large"
                )
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            payload = json.loads(body)
        except ValueError:
            raise OpenAIError(400, "the body is not valid JSON", code="malformed") from None
        if not isinstance(payload, dict):
            raise OpenAIError(400, "the body must be a JSON object", code="malformed")
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise OpenAIError(
                400, "model: a model name is required", code="missing_model", param="model"
            )
        if "stream" in payload and not isinstance(payload["stream"], bool):
            raise OpenAIError(400, "stream: must be true or false", param="stream")
        return body, payload

    async def route_for_fresh(self, key: Key, model: str) -> Route:
        """``route_for``, reading the table again on a miss: a service is callable the
        moment it is created, not a refresh later. Misses are remembered a second."""
        try:
            return self.route_for(key, model)
        except OpenAIError:
            now = time.monotonic()
            # Bounded: a key holder naming random models reads the store at most a few
            # times a refresh, not once a request.
            if self._missed_models.get(model, 0) > now or now - self._table_read_at < 0.05:
                raise
            self._table_read_at = now
            table = await asyncio.get_running_loop().run_in_executor(None, self._load_table)
            if model not in table.routes:
                if len(self._missed_models) > 10_000:
                    self._missed_models.clear()
                self._missed_models[model] = time.monotonic() + 1.0
                raise
            old, self.table = self.table, table
            if old != table and self._changed is not None:
                self._changed.set()
                self._changed = asyncio.Event()
            return self.route_for(key, model)

    def _load_table(self) -> RouteTable:
        with self.sessions.begin() as s:
            return load_table(s)

    def route_for(self, key: Key, model: str) -> Route:
        route = self.table.routes.get(model)
        if route is None or not key.may_call(route):
            # Another tenant's private model is reported exactly as a missing one.
            raise OpenAIError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )
        return route

    # ------------------------------------------------------------------ routing

    def pick(self, model: str, tried: set[int], now: float) -> tuple[Route, Replica | None]:
        route = self.table.routes.get(model)
        if route is None:
            raise OpenAIError(404, f"The model `{model}` no longer exists.", code="model_not_found")
        best, best_open = None, 1 << 30
        # Ties go round the replicas, so sequential requests spread too.
        self._turn += 1
        count = len(route.replicas)
        start = self._turn % count if count else 0
        for replica in route.replicas[start:] + route.replicas[:start]:
            if replica.id in tried or self._suspect.get(replica.id, 0) > now:
                continue
            open_now = self.open_by_replica.get(replica.id, 0)
            if open_now < best_open:
                best, best_open = replica, open_now
        return route, best

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any, path: str) -> None:
        body, payload = await self._read_json(scope, receive)
        key = await self.authenticate_fresh(scope)
        await self.serve_payload(key, payload["model"], path, body, payload, send)

    async def serve_payload(
        self, key: Key, model: str, path: str, body: bytes, payload: dict[str, Any], send: Any
    ) -> None:
        """Check the key's access and limits, then serve from a replica (or wait for one)."""
        route = await self.route_for_fresh(key, model)
        now = self.clock()
        wait = self.limits.admit(key.id, key.rpm, key.tpm, now)
        if wait is not None:
            raise OpenAIError(
                429,
                "rate limit reached for this key; retry after the Retry-After seconds",
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers=[(b"retry-after", retry_after(wait).encode())],
            )
        self.stats.requests += 1
        deadline = time.monotonic() + self.wait_timeout_s
        tried: set[int] = set()
        sid = route.service_id
        while True:
            route, replica = self.pick(model, tried, self.clock())
            if replica is None:
                await self._wait_for_replicas(sid, deadline)
                tried.clear()
                continue
            self.open_by_replica[replica.id] += 1
            self.open_by_service[sid] += 1
            try:
                done = await self._try_replica(replica, path, body, payload, send, key, route)
            finally:
                self.open_by_replica[replica.id] -= 1
                self.open_by_service[sid] -= 1
            if done:
                return
            tried.add(replica.id)
            self._suspect[replica.id] = self.clock() + SUSPECT_S
            self.stats.retries += 1

    async def _wait_for_replicas(self, service_id: int, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self._changed is None:
            self.stats.timeouts += 1
            self._gave_up[service_id] = self.clock()
            raise OpenAIError(
                503,
                "no replica of this model is ready yet; it is starting, retry shortly",
                kind="server_error",
                code="model_starting",
                headers=[(b"retry-after", b"5")],
            )
        self.waiting_by_service[service_id] += 1
        try:
            await asyncio.wait_for(self._changed.wait(), min(remaining, self.refresh_s * 4))
        except TimeoutError:
            pass
        finally:
            self.waiting_by_service[service_id] -= 1

    async def _try_replica(
        self,
        replica: Replica,
        path: str,
        body: bytes,
        payload: dict[str, Any],
        send: Any,
        key: Key,
        route: Route,
    ) -> bool:
        """Serve the request from ``replica``; False if it failed before any byte reached
        the client (the caller tries another)."""
        assert self._upstream is not None
        try:
            response = await self._upstream.post(replica.host, replica.port, path, body)
        except UpstreamError:
            return False
        try:
            if response.status in (502, 503, 504):
                return False
            ctype = response.header(b"content-type") or b"application/json"
            if not ctype.startswith(b"text/event-stream"):
                try:
                    data = await response.read()
                except UpstreamError:
                    return False  # nothing sent yet: still safe to retry
                await _send(send, response.status, data, content_type=ctype)
                self.stats.by_status[response.status] += 1
                usage = None
                if response.status == 200:
                    try:
                        usage = _usage_tokens(json.loads(data).get("usage"))
                    except (ValueError, AttributeError):
                        usage = None
                self._account(key, route, payload, usage, len(body), len(data), response.status)
                return True
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (b"content-type", ctype),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            tally = StreamTally()
            try:
                async for chunk in response.chunks():
                    tally.feed(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except UpstreamError:
                self.stats.cut_streams += 1
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.stats.by_status[response.status] += 1
            usage = _usage_tokens(tally.usage) or (prompt_words(payload), tally.chunks)
            self._account(key, route, payload, usage, len(body), tally.bytes, response.status)
            return True
        finally:
            response.release()

    def _account(
        self,
        key: Key,
        route: Route,
        payload: dict[str, Any],
        usage: tuple[int, int] | None,
        request_bytes: int,
        response_bytes: int,
        status: int,
    ) -> None:
        now = self.clock()
        prompt, completion = usage or (0, 0)
        self.limits.add_tokens(key.id, prompt + completion, now)
        self.meter.add(
            now=now,
            key_id=key.id,
            model=route.model,
            owner=route.tenant,
            prompt=prompt,
            completion=completion,
        )
        if key.showcase and self.on_audit is not None:
            self.on_audit(route, status, request_bytes, response_bytes, payload)

    async def _models(self, scope: dict[str, Any], send: Any) -> None:
        key = await self.authenticate_fresh(scope)
        data = [
            {"id": r.model, "object": "model", "created": 0, "owned_by": r.tenant}
            for r in self.table.routes.values()
            if key.may_call(r)
        ]
        await _send(send, 200, json.dumps({"object": "list", "data": data}).encode())


async def _send(
    send: Any,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
