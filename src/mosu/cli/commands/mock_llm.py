"""``mosu mock-llm``: an OpenAI-compatible model server with settable timings, for tests
and demos (``mosu.gateway.mock_llm``)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mosu.core.errors import InvalidInput


def mock_llm(
    model: Annotated[str, typer.Option(help="The model name it answers to.")] = "mock",
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Listen port (default: $PORT, as mosu sets for a service).")
    ] = None,
    startup_delay: Annotated[
        float, typer.Option(help="Seconds before it listens (as a model loading).")
    ] = 0.0,
    ttft: Annotated[float, typer.Option(help="Seconds to the first token.")] = 0.0,
    itl: Annotated[float, typer.Option(help="Seconds between tokens.")] = 0.0,
    max_concurrency: Annotated[
        int, typer.Option(help="Requests decoded at once (0: no limit); the rest wait.")
    ] = 0,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 500.")] = 0.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens in an answer by default.")] = 16,
    seed: Annotated[int, typer.Option(help="Output and errors depend only on it.")] = 0,
) -> None:
    """Serve a mock language model (chat, completions, embeddings, /metrics)."""
    from mosu.gateway.mock_llm import MockConfig, serve

    if port is None:
        env = os.environ.get("PORT", "")
        if not env.isdigit():
            raise InvalidInput("give --port or set PORT", field="--port")
        port = int(env)
    for name, value in (("--startup-delay", startup_delay), ("--ttft", ttft), ("--itl", itl)):
        if value < 0:
            raise InvalidInput("must be 0 or more", field=name)
    if not 0 <= error_rate <= 1:
        raise InvalidInput("must be between 0 and 1", field="--error-rate")
    if max_concurrency < 0:
        raise InvalidInput("must be 0 or more", field="--max-concurrency")
    if max_tokens < 1:
        raise InvalidInput("must be 1 or more", field="--max-tokens")
    config = MockConfig(
        model=model,
        ttft_s=ttft,
        itl_s=itl,
        max_concurrency=max_concurrency,
        error_rate=error_rate,
        seed=seed,
        max_tokens=max_tokens,
    )
    serve(config, host=host, port=port, startup_delay_s=startup_delay)
