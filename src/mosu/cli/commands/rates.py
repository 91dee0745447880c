"""``mosu rates``: the rate card (credits per GPU-hour per GPU type, CPU and memory)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.commands.credits import parse_time
from mosu.cli.render import Output, OutputOpt, emit, table, when
from mosu.core.credits_api import RateLine, RateSet
from mosu.core.errors import InvalidInput

app = typer.Typer(help="The rate card: credits per GPU-hour.", no_args_is_help=True)

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


@app.command("set")
def set_(
    rates: Annotated[list[str], typer.Argument(help="TYPE=CREDITS/h (cpu, mem, * too).")],
    effective: Annotated[
        str | None, typer.Option("--from", help="When they take effect (default now).")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Set rates from now (or a later time) on; what ran before keeps its rates."""
    body = RateSet(rates=parse_rates(rates), effective_at=parse_time(effective, "--from"))
    with config.client() as c:
        card = c.set_rates(body)
    emit(output, card, lambda: f"{len(body.rates)} rates set")


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
    emit(output, card, lambda: table(None, columns, rows) if rows else "no rates set")
