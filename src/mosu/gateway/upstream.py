"""A lean HTTP/1.1 client for the gateway's calls to replicas: pooled keep-alive
connections per replica, responses parsed by ``httptools`` (llhttp, the parser uvicorn
uses), bodies handed on as they arrive (chunked encoding decoded).

The gateway's own cost is on every request; a general-purpose client spends several
times more CPU per call than this path. Replicas run tenants' code, so what they send
is bounded: headers by the parser's limits, a whole (non-streamed) body by
``MAX_RESPONSE_BYTES``."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator

import httptools

MAX_RESPONSE_BYTES = 64 << 20
CONNECT_TIMEOUT_S = 2.0
POOL_PER_REPLICA = 256
IDLE_S = 3.0
"""Idle connections older than this are not reused (below common keep-alive timeouts)."""


class UpstreamError(Exception):
    """The replica failed; ``before_response`` if nothing of an answer had arrived."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class _Message:
    __slots__ = ("chunks", "done", "headers", "headers_done")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.chunks: deque[bytes] = deque()
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0

    def close(self) -> None:
        self.writer.close()


class Response:
    """One answer: status and headers are read; the body is read with ``chunks()``."""

    def __init__(
        self,
        pool: Upstream,
        key: tuple[str, int],
        conn: _Connection,
        parser: httptools.HttpResponseParser,
        message: _Message,
    ) -> None:
        self._pool, self._key, self._conn = pool, key, conn
        self._parser, self._message = parser, message
        self.status: int = parser.get_status_code()
        self.headers = message.headers
        self._finished = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        message = self._message
        while True:
            while message.chunks:
                yield message.chunks.popleft()
            if message.done:
                self._finished = True
                return
            try:
                data = await self._conn.reader.read(65536)
            except OSError as exc:
                raise UpstreamError(str(exc), before_response=False) from None
            if not data:
                raise UpstreamError("the replica closed the answer early", before_response=False)
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise UpstreamError(f"bad answer: {exc}", before_response=False) from None

    async def read(self) -> bytes:
        parts, size = [], 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise UpstreamError("the answer is too large", before_response=False)
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Back to the pool if the answer was read whole and the connection may be kept."""
        # Decided from the answer itself: the parser's own flag is reset once a message
        # is complete. HTTP/1.1 keeps the connection unless it says close.
        close = (self.header(b"connection") or b"").lower() == b"close"
        if self._finished and not close and self._parser.get_http_version() == "1.1":
            self._pool._give_back(self._key, self._conn)
        else:
            self._conn.close()


class Upstream:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(self, host: str, port: int, path: str, body: bytes) -> Response:
        """Send ``body`` and read up to the end of the answer's headers. A kept-alive
        connection the replica had already closed is retried once on a fresh one."""
        key = (host, port)
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        for _ in range(2):
            conn = self._take(key)
            reused = conn is not None
            if conn is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
                    )
                except (OSError, TimeoutError) as exc:
                    raise UpstreamError(f"cannot connect: {exc}", before_response=True) from None
                conn = _Connection(reader, writer)
            message = _Message()
            parser = httptools.HttpResponseParser(message)
            try:
                conn.writer.write(head + body)
                while not message.headers_done:
                    data = await conn.reader.read(65536)
                    if not data:
                        raise ConnectionResetError("closed before answering")
                    parser.feed_data(data)
            except (OSError, httptools.HttpParserError) as exc:
                conn.close()
                if reused and isinstance(exc, OSError):
                    # A stale kept-alive connection: the others kept as long are likely
                    # stale too; once more on a new one.
                    self._drop(key)
                    continue
                raise UpstreamError(str(exc), before_response=True) from None
            return Response(self, key, conn, parser, message)
        raise UpstreamError("the replica keeps closing connections", before_response=True)

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        """The most recently used idle connection, if the replica has not timed it out
        yet (servers close idle connections after a few seconds: uvicorn after 5)."""
        idle = self._idle.get(key)
        if not idle:
            return None
        conn = idle.pop()
        if time.monotonic() - conn.idle_since > IDLE_S:
            self._drop(key)  # the rest were idle longer still
            conn.close()
            return None
        return conn

    def _drop(self, key: tuple[str, int]) -> None:
        for conn in self._idle.pop(key, []):
            conn.close()

    def _give_back(self, key: tuple[str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < POOL_PER_REPLICA:
            conn.idle_since = time.monotonic()
            idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
