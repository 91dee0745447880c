"""``mosu mock-llm``: an OpenAI-compatible model server for tests, demos and benchmarks.

It answers like a small language model (chat and text completions, embeddings, the model
list, SSE streaming) with settable timings (startup delay, time to first token, time
between tokens), a maximum number of requests decoded at once (the rest wait, as in a
real engine's queue), an error rate, and output that depends only on the prompt and the
seed. ``/metrics`` exposes ``vllm:num_requests_running`` and ``vllm:num_requests_waiting``
under vLLM's names, so autoscaling on a replica's own metric can be tested without GPUs.

A raw ASGI app (no framework): the benchmark measures the gateway's overhead against
this server, so the server itself must add as little as possible.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any

Scope = dict[str, Any]

_VOCABULARY = (
    "the model answers with words chosen by the hash of the prompt so every run of the "
    "same request gives the same text while different prompts read differently enough "
    "for tests to tell them apart cluster tenant quota replica gateway token stream"
)
WORDS = tuple(_VOCABULARY.split(" "))
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class MockConfig:
    model: str = "mock"
    ttft_s: float = 0.0
    itl_s: float = 0.0
    max_concurrency: int = 0
    """Requests decoded at once; 0 means no limit. The rest wait in a queue."""
    error_rate: float = 0.0
    seed: int = 0
    max_tokens: int = 16
    embedding_dim: int = 8


def count_tokens(text: str) -> int:
    """Whitespace words: the mock's (and the gateway's fallback) token count."""
    return len(text.split())


def completion_words(prompt: str, n: int, seed: int) -> list[str]:
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    rng = random.Random(digest)
    return [rng.choice(WORDS) for _ in range(n)]


def embedding(text: str, dim: int, seed: int) -> list[float]:
    digest = hashlib.sha256(f"{seed}:emb:{text}".encode()).digest()
    rng = random.Random(digest)
    raw = [rng.uniform(-1, 1) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def _prompt_text(body: dict[str, Any], chat: bool) -> str:
    if chat:
        parts = []
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    p.get("text", "") for p in content if isinstance(p, dict) and "text" in p
                )
        return "\n".join(parts)
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


class MockLLM:
    """The ASGI application; counters are read by ``/metrics``."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.running = 0
        self.waiting = 0
        self.served = 0
        self._slots: asyncio.Semaphore | None = None
        self._errors = random.Random(config.seed)
        self._created = int(time.time())

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path in ("/health", "/ready"):
            await _reply(send, 200, b"ok", "text/plain")
        elif method == "GET" and path == "/metrics":
            await _reply(send, 200, self.metrics().encode(), "text/plain; version=0.0.4")
        elif method == "GET" and path == "/v1/models":
            models = {
                "object": "list",
                "data": [
                    {
                        "id": self.config.model,
                        "object": "model",
                        "created": self._created,
                        "owned_by": "mosu-mock",
                    }
                ],
            }
            await _json(send, 200, models)
        elif method == "POST" and path in (
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
        ):
            raw = await _read_body(receive)
            try:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                await _error(send, 400, "the body is not a JSON object", "invalid_request_error")
                return
            await self._generate(path, body, send)
        else:
            await _error(send, 404, f"no route {method} {path}", "not_found_error")

    def metrics(self) -> str:
        model = self.config.model
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{model}"}} {self.running}\n'
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="{model}"}} {self.waiting}\n'
            "# TYPE mock_requests_served_total counter\n"
            f"mock_requests_served_total {self.served}\n"
        )

    async def _generate(self, path: str, body: dict[str, Any], send: Any) -> None:
        cfg = self.config
        if self._slots is None and cfg.max_concurrency > 0:
            self._slots = asyncio.Semaphore(cfg.max_concurrency)
        self.waiting += 1
        try:
            if self._slots is not None:
                await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            if cfg.error_rate > 0 and self._errors.random() < cfg.error_rate:
                await _error(send, 500, "injected failure", "server_error")
                return
            if path == "/v1/embeddings":
                await self._embeddings(body, send)
            else:
                await self._complete(body, send, chat=path == "/v1/chat/completions")
            self.served += 1
        finally:
            self.running -= 1
            if self._slots is not None:
                self._slots.release()

    async def _embeddings(self, body: dict[str, Any], send: Any) -> None:
        cfg = self.config
        inputs = body.get("input", "")
        texts = [inputs] if isinstance(inputs, str) else [str(x) for x in inputs]
        if cfg.ttft_s:
            await asyncio.sleep(cfg.ttft_s)
        prompt_tokens = sum(count_tokens(t) for t in texts)
        await _json(
            send,
            200,
            {
                "object": "list",
                "model": body.get("model", cfg.model),
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": embedding(t, cfg.embedding_dim, cfg.seed),
                    }
                    for i, t in enumerate(texts)
                ],
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            },
        )

    async def _complete(self, body: dict[str, Any], send: Any, *, chat: bool) -> None:
        cfg = self.config
        prompt = _prompt_text(body, chat)
        wanted = body.get("max_tokens") or body.get("max_completion_tokens") or cfg.max_tokens
        n = max(1, min(int(wanted), 4096)) if isinstance(wanted, int) else cfg.max_tokens
        words = completion_words(prompt, n, cfg.seed)
        model = body.get("model", cfg.model)
        usage = {
            "prompt_tokens": count_tokens(prompt),
            "completion_tokens": n,
            "total_tokens": count_tokens(prompt) + n,
        }
        ident = "cmpl-" + hashlib.sha256(f"{prompt}:{n}".encode()).hexdigest()[:16]
        created = int(time.time())
        if not body.get("stream"):
            if cfg.ttft_s or cfg.itl_s:
                await asyncio.sleep(cfg.ttft_s + cfg.itl_s * (n - 1))
            text = " ".join(words)
            choice: dict[str, Any] = (
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length",
                }
                if chat
                else {"index": 0, "text": text, "finish_reason": "length", "logprobs": None}
            )
            await _json(
                send,
                200,
                {
                    "id": ident,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                },
            )
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        kind = "chat.completion.chunk" if chat else "text_completion"
        for i, word in enumerate(words):
            await asyncio.sleep(cfg.ttft_s if i == 0 else cfg.itl_s)
            piece = word if i == 0 else " " + word
            last = i == n - 1
            delta: dict[str, Any] = (
                {
                    "index": 0,
                    "delta": (
                        {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                    ),
                    "finish_reason": "length" if last else None,
                }
                if chat
                else {"index": 0, "text": piece, "finish_reason": "length" if last else None}
            )
            chunk = {"id": ident, "object": kind, "created": created, "model": model}
            chunk["choices"] = [delta]
            await _event(send, chunk)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            chunk = {"id": ident, "object": kind, "created": created, "model": model}
            chunk["choices"] = []
            chunk["usage"] = usage
            await _event(send, chunk)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _event(send: Any, payload: dict[str, Any]) -> None:
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return b""
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(send: Any, status: int, body: bytes, ctype: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, status: int, payload: dict[str, Any]) -> None:
    await _reply(send, status, json.dumps(payload).encode(), "application/json")


async def _error(send: Any, status: int, message: str, kind: str) -> None:
    await _json(
        send, status, {"error": {"message": message, "type": kind, "param": None, "code": None}}
    )


def serve(config: MockConfig, *, host: str, port: int, startup_delay_s: float = 0.0) -> None:
    """Load (sleep), then listen; SIGTERM finishes in-flight requests before exiting, as a
    real model server does, which is what lets a drained replica lose nothing."""
    import uvicorn

    if startup_delay_s > 0:
        time.sleep(startup_delay_s)
    uvicorn.run(
        MockLLM(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
