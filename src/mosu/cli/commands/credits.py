"""``mosu credits``: balances, grants and statements of the credit ledger."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, dump, emit, table, when
from mosu.core.credits import from_micro
from mosu.core.credits_api import GrantCreate
from mosu.core.errors import InvalidInput

app = typer.Typer(help="Compute credits: balances, grants, statements.", no_args_is_help=True)


def parse_time(value: str | None, option: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO date or date and time (UTC unless it names a zone); a bare date with
    ``end_of_day`` means the end of that day (a grant valid through it)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not a date (2027-03-31) or time (2027-03-31T12:00)", field=option
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end_of_day and len(value) == 10:
        parsed += timedelta(days=1)
    return parsed


def _credits(micro: int) -> str:
    return f"{from_micro(micro):,.6f}".rstrip("0").rstrip(".")


@app.command("balance")
def balance(
    tenant: Annotated[str | None, typer.Argument(help="Only this tenant.")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Balances: the sum of each tenant's ledger, what is granted now and reserved."""
    with config.client() as c:
        found = c.credit_balances(tenant=tenant)
    if output == Output.JSON and tenant is not None and len(found) == 1:
        print(dump(found[0]))
        return
    rows = [
        (
            b.tenant,
            _credits(b.balance_micro),
            _credits(b.granted_micro),
            _credits(b.reserved_micro),
            b.on_credits_exhausted.value,
            "yes" if b.exhausted else "",
        )
        for b in found
    ]
    columns = ["tenant", "balance", "granted", "reserved", "when exhausted", "exhausted"]
    emit(output, found, lambda: table(None, columns, rows) if rows else "no tenants")


@app.command("grant")
def grant(
    tenant: str,
    amount: Annotated[float, typer.Argument(help="Credits to grant.")],
    expires: Annotated[
        str | None, typer.Option(help="Expiry: a date (valid through it) or a time, UTC.")
    ] = None,
    effective: Annotated[
        str | None, typer.Option("--from", help="When it takes effect (default now).")
    ] = None,
    priority: Annotated[
        int, typer.Option(help="Among grants expiring together, lower is drawn first.")
    ] = 0,
    note: Annotated[str, typer.Option(help='What it is, e.g. "seed voucher 2026-Q4".')] = "",
    output: OutputOpt = Output.TABLE,
) -> None:
    """Grant a tenant credits (operator only)."""
    body = GrantCreate(
        tenant=tenant,
        amount=amount,
        effective_at=parse_time(effective, "--from"),
        expires_at=parse_time(expires, "--expires", end_of_day=True),
        priority=priority,
        note=note,
    )
    with config.client() as c:
        out = c.grant_credits(body)
    expiry = f", expires {when(out.expires_at)}" if out.expires_at else ""
    emit(output, out, lambda: f"granted {out.amount:g} credits to {out.tenant}{expiry}")


class StatementFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


@app.command("statement")
def statement(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    month: Annotated[str | None, typer.Option(help="A UTC month, e.g. 2026-12.")] = None,
    output: Annotated[
        StatementFormat, typer.Option("--output", "-o", case_sensitive=False)
    ] = StatementFormat.TABLE,
) -> None:
    """Charges per GPU type (guaranteed or borrowed), token charges per model, grants,
    refunds and expiries."""
    with config.client() as c:
        out = c.credit_statement(tenant=tenant, month=month)
    if output == StatementFormat.JSON:
        print(dump(out))
        return
    columns = [
        "tenant",
        "kind",
        "gpu_type",
        "borrowed",
        "gpu_hours",
        "amount",
        "note",
        "model",
        "prompt_tokens",
        "completion_tokens",
    ]
    rows = [
        (
            line.tenant,
            line.kind,
            line.gpu_type or "",
            "" if line.borrowed is None else ("yes" if line.borrowed else "no"),
            f"{line.gpu_hours:.6f}" if line.kind == "charge" else "",
            _credits(line.amount_micro),
            line.note,
            line.model or "",
            str(line.prompt_tokens) if line.kind == "tokens" else "",
            str(line.completion_tokens) if line.kind == "tokens" else "",
        )
        for line in out.lines
    ]
    if output == StatementFormat.CSV:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        print(buf.getvalue(), end="")
        return
    emit(Output.TABLE, out, lambda: table(None, columns, rows) if rows else "no entries")
    if out.totals:
        totals = [
            (
                t.tenant,
                _credits(t.granted_micro),
                _credits(t.charged_micro),
                _credits(t.refunded_micro),
                _credits(t.expired_micro),
                _credits(t.net_micro),
                f"{t.gpu_hours:.3f}",
            )
            for t in out.totals
        ]
        cols = ["tenant", "granted", "charged", "refunded", "expired", "net", "gpu-hours"]
        emit(Output.TABLE, out, lambda: table("totals", cols, totals))
