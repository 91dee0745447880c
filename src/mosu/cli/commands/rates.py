"""``mosu rates``: the rate card (credits per GPU-hour per GPU type, CPU and memory; credits
per million prompt and completion tokens per model)."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.console import Group, RenderableType

from mosu.cli import config
from mosu.cli.commands.credits import parse_time
from mosu.cli.render import Output, OutputOpt, emit, table, when
from mosu.core.credits_api import RateLine, RateSet, TokenRateLine
from mosu.core.errors import InvalidInput

app = typer.Typer(
    help="The rate card: credits per GPU-hour and per million tokens.", no_args_is_help=True
)

_RATE = re.compile(r"^(?P<res>[^=:\s]+)(?P<borrowed>:borrowed)?=(?P<num>[0-9.eE+-]+)(/h)?$")


def parse_rates(values: list[str]) -> list[RateLine]:
    """``H800=2.5/h H800:borrowed=1.5/h cpu=0.01/h`` → one line per resource."""
    lines: dict[str, dict[str, float]] = {}
    for value in values:
        m = _RATE.match(value)
        if m is None:
            raise InvalidInput(
                f"expected TYPE=CREDITS/h or TYPE:borrowed=CREDITS/h, got {value!r}",
                field="rates",
            )
        try:
            number = float(m["num"])
        except ValueError:
            raise InvalidInput(
                f"{m['num']!r} is not a number in {value!r}", field="rates"
            ) from None
        key = "borrowed_per_hour" if m["borrowed"] else "per_hour"
        lines.setdefault(m["res"], {})[key] = number
    out = []
    for resource, fields in lines.items():
        if "per_hour" not in fields:
            raise InvalidInput(f"{resource} has a borrowed rate but no rate", field="rates")
        out.append(RateLine(resource=resource, **fields))
    return out


_TOKEN_RATE = re.compile(r"^(?P<kind>prompt|completion)=(?P<num>[^/\s]+)(/M)?$")


def parse_token_rates(model: str, values: list[str]) -> TokenRateLine:
    """``prompt=0.5/M completion=1.5/M`` (credits per million tokens) for one model."""
    fields: dict[str, float] = {}
    for value in values:
        m = _TOKEN_RATE.match(value)
        if m is None:
            raise InvalidInput(
                f"with --model, expected prompt=CREDITS/M or completion=CREDITS/M, got {value!r}",
                field="rates",
            )
        try:
            number = float(m["num"])
        except ValueError:
            raise InvalidInput(
                f"{m['num']!r} is not a number in {value!r}", field=m["kind"]
            ) from None
        if not 0 <= number <= 1e12 or number != number:
            raise InvalidInput(
                f"{value!r}: a rate is a number of credits from 0 to 1e12", field=m["kind"]
            )
        fields[f"{m['kind']}_per_m"] = number
    for kind in ("prompt", "completion"):
        if f"{kind}_per_m" not in fields:
            raise InvalidInput(
                f"model {model} needs {kind}=CREDITS/M (credits per million {kind} tokens)",
                field=kind,
            )
    return TokenRateLine(model=model, **fields)


@app.command("set")
def set_(
    rates: Annotated[
        list[str],
        typer.Argument(
            help="TYPE=CREDITS/h (cpu, mem, * too); with --model, prompt=CREDITS/M "
            "completion=CREDITS/M (per million tokens)."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", help="Token rates for this model ('*': any other model)."),
    ] = None,
    effective: Annotated[
        str | None, typer.Option("--from", help="When they take effect (default now).")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Set rates from now (or a later time) on; what ran before keeps its rates."""
    at = parse_time(effective, "--from")
    if model is None:
        body = RateSet(rates=parse_rates(rates), effective_at=at)
    else:
        body = RateSet(tokens=[parse_token_rates(model, rates)], effective_at=at)
    with config.client() as c:
        card = c.set_rates(body)
    emit(output, card, lambda: f"{len(body.rates) + len(body.tokens)} rates set")


@app.command("list")
def list_(output: OutputOpt = Output.TABLE) -> None:
    """Every rate with the time it takes effect."""
    with config.client() as c:
        card = c.rates()
    rows = [
        (
            r.resource,
            f"{r.per_hour:g}",
            "" if r.borrowed_per_hour is None else f"{r.borrowed_per_hour:g}",
            when(r.effective_at),
        )
        for r in card.rates
    ]
    columns = ["resource", "credits/h", "borrowed credits/h", "from"]
    token_rows = [
        (t.model, f"{t.prompt_per_m:g}", f"{t.completion_per_m:g}", when(t.effective_at))
        for t in card.tokens
    ]
    token_columns = ["model", "prompt credits/M", "completion credits/M", "from"]

    def text() -> RenderableType:
        parts = []
        if rows:
            parts.append(table(None, columns, rows))
        if token_rows:
            parts.append(table(None, token_columns, token_rows))
        return Group(*parts) if parts else "no rates set"

    emit(output, card, text)
