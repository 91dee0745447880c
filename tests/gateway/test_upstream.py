"""The gateway's client to replicas keeps connections alive, and a replica restarted on
the same port (every kept connection now dead) costs one retry, not one per connection."""

from __future__ import annotations

import asyncio

import pytest

from mosu.gateway.upstream import Upstream, UpstreamError
from tests.gateway.procs import free_port, mock_llm

pytestmark = pytest.mark.timeout(60)
BODY = b'{"model": "mock", "prompt": "a b c", "max_tokens": 3}'


async def _many(up: Upstream, port: int, n: int) -> list[int]:
    async def one() -> int:
        response = await up.post("127.0.0.1", port, "/v1/completions", BODY)
        await response.read()
        response.release()
        return response.status

    return list(await asyncio.gather(*(one() for _ in range(n))))


def test_kept_connections_and_a_restarted_replica() -> None:
    port = free_port()
    up = Upstream()
    loop = asyncio.new_event_loop()
    try:
        with mock_llm(port=port):
            assert loop.run_until_complete(_many(up, port, 8)) == [200] * 8
            kept = len(up._idle[("127.0.0.1", port)])
            assert kept == 8
            # Sequential calls reuse one connection: the pool does not grow.
            for _ in range(5):
                loop.run_until_complete(_many(up, port, 1))
            assert len(up._idle[("127.0.0.1", port)]) == 8
        # The same port, a new server: all 8 kept connections are dead.
        with mock_llm(port=port):
            assert loop.run_until_complete(_many(up, port, 1)) == [200]
        with pytest.raises(UpstreamError) as refused:
            loop.run_until_complete(_many(up, port, 1))
        assert refused.value.before_response
    finally:
        up.close()
        loop.run_until_complete(asyncio.sleep(0.05))  # let the transports finish closing
        loop.close()
