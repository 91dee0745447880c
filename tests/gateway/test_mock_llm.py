"""``mosu mock-llm`` answers the official ``openai`` client like a model server would."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from tests.gateway.procs import SRC, free_port, mock_llm

pytestmark = pytest.mark.timeout(60)


def test_chat_completion_is_deterministic_and_counts_usage() -> None:
    with mock_llm("--model", "tiny", "--max-tokens", "5") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        first = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello there world"}]
        )
        again = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello there world"}]
        )
        other = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "something else entirely"}]
        )
        assert first.choices[0].message.content == again.choices[0].message.content
        assert first.choices[0].message.content != other.choices[0].message.content
        assert len(first.choices[0].message.content.split()) == 5
        assert first.usage is not None
        assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (3, 5)
        assert [m.id for m in client.models.list()] == ["tiny"]


def test_streaming_completions_and_embeddings() -> None:
    with mock_llm("--max-tokens", "4") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        stream = client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "stream me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            if chunk.usage is not None:
                usage = chunk.usage
        assert len("".join(pieces).split()) == 4
        assert usage is not None and usage.completion_tokens == 4
        text = client.completions.create(model="mock", prompt="a b", max_tokens=3)
        assert len(text.choices[0].text.split()) == 3
        emb = client.embeddings.create(model="mock", input=["one", "two"])
        assert len(emb.data) == 2 and len(emb.data[0].embedding) == 8
        assert emb.data[0].embedding != emb.data[1].embedding


def test_time_to_first_token_and_metrics_show_the_queue() -> None:
    with mock_llm("--ttft", "0.5", "--max-concurrency", "1") as url:
        done: list[float] = []

        def call() -> None:
            t0 = time.monotonic()
            httpx.post(
                url + "/v1/completions", json={"model": "mock", "prompt": "x"}, timeout=10
            ).raise_for_status()
            done.append(time.monotonic() - t0)

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.25)
        metrics = httpx.get(url + "/metrics").text
        for t in threads:
            t.join()
        assert 'vllm:num_requests_running{model_name="mock"} 1' in metrics
        assert 'vllm:num_requests_waiting{model_name="mock"} 2' in metrics
        # One at a time: the last of three waits for two others' first tokens.
        assert min(done) >= 0.5
        assert max(done) >= 1.5


def test_error_rate_one_fails_every_request_in_openai_format() -> None:
    with mock_llm("--error-rate", "1") as url:
        reply = httpx.post(url + "/v1/completions", json={"model": "mock", "prompt": "x"})
        assert reply.status_code == 500
        assert reply.json()["error"]["message"] == "injected failure"


def test_bad_option_is_one_line() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mosu.cli.main",
            "mock-llm",
            "--port",
            str(free_port()),
            "--error-rate",
            "2",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --error-rate: must be between 0 and 1"
