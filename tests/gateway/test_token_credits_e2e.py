"""Tokens on the credit ledger through ``mosu up``: the operator prices a model's tokens
with ``mosu rates set --model``, a tenant's service answers the official ``openai``
client, and the tokens appear on the owner's statement and reduce its balance by exactly
usage × rate (2 and 3 credits per million: whole micro-credits per token, no rounding)."""

from __future__ import annotations

import json

import openai
import pytest

from mosu.client.services import ServicesApi
from tests.cli.test_platform_cli import cli_env, mosu, one_line_error  # noqa: F401
from tests.e2e.conftest import OPERATOR_TOKEN, wait_for
from tests.gateway.conftest import Platform, mock_service

pytestmark = pytest.mark.timeout(180)


def test_tokens_are_charged_to_the_model_owner(platform: Platform, cli_env) -> None:  # noqa: F811
    op = {**cli_env, "MOSU_URL": platform.server.url, "MOSU_TOKEN": OPERATOR_TOKEN}
    bad = mosu(
        "rates", "set", "--model", "acme-tiny", "prompt=abc/M", "completion=1/M", env=op, ok=False
    )
    assert "prompt" in one_line_error(bad, "'abc' is not a number")
    one_line_error(
        mosu("rates", "set", "--model", "acme-tiny", "prompt=1/M", env=op, ok=False),
        "completion=CREDITS/M",
    )
    mosu("rates", "set", "--model", "acme-tiny", "prompt=2/M", "completion=3/M", env=op)
    card = json.loads(mosu("rates", "list", "-o", "json", env=op).stdout)
    assert [(t["model"], t["prompt_per_m"], t["completion_per_m"]) for t in card["tokens"]] == [
        ("acme-tiny", 2.0, 3.0)
    ]
    listed = mosu("rates", "list", env=op).stdout
    assert "prompt credits/M" in listed and "acme-tiny" in listed
    mosu("credits", "grant", "acme", "100", "--expires", "2099-12-31", env=op)

    with platform.client("acme") as c:
        ServicesApi(c).create(mock_service("tiny", "acme-tiny", "--max-tokens", "7"))
    platform.wait_ready("acme", "tiny", 1)
    key = platform.key("acme", "acme-tiny")
    start = _balance(op)

    prompt = completion = 0
    with openai.OpenAI(base_url=platform.base_url, api_key=key, max_retries=0) as client:
        for text in ("hello", "hello token ledger", "one two three four five"):
            answer = client.chat.completions.create(
                model="acme-tiny", messages=[{"role": "user", "content": text}]
            )
            assert answer.usage is not None
            prompt += answer.usage.prompt_tokens
            completion += answer.usage.completion_tokens
    assert prompt > 0 and completion > 0
    expected = 2 * prompt + 3 * completion  # micro-credits

    def statement() -> dict:
        return json.loads(
            mosu("credits", "statement", "--tenant", "acme", "-o", "json", env=op).stdout
        )

    def token_lines() -> list[dict]:
        return [x for x in statement()["lines"] if x["kind"] == "tokens"]

    # The gateway stores (and charges) what it metered about once a second.
    wait_for(
        lambda: sum(x["prompt_tokens"] for x in token_lines()) == prompt,
        timeout=20,
        what="the token charge on the statement",
    )
    lines = token_lines()
    assert [
        (x["model"], x["prompt_tokens"], x["completion_tokens"], x["amount_micro"]) for x in lines
    ] == [("acme-tiny", prompt, completion, -expected)]
    assert start - _balance(op) == expected
    csv_text = mosu("credits", "statement", "--tenant", "acme", "-o", "csv", env=op).stdout
    amount = f"{-expected / 1e6:,.6f}".rstrip("0").rstrip(".")
    assert f"acme,tokens,,,,{amount},,acme-tiny,{prompt},{completion}\n" in csv_text
    # The owner sees the line on its own statement; beta has no token charges.
    beta = {**cli_env, "MOSU_URL": platform.server.url, "MOSU_TOKEN": platform.tokens["beta"]}
    mine = json.loads(mosu("credits", "statement", "-o", "json", env=beta).stdout)
    assert not [x for x in mine["lines"] if x["kind"] == "tokens"]


def _balance(env: dict[str, str]) -> int:
    return json.loads(mosu("credits", "balance", "acme", "-o", "json", env=env).stdout)[
        "balance_micro"
    ]
