"""``mosu tenant``: onboard companies with a guaranteed quota, a limit, a weight and a
cohort (tenants of one cohort lend idle guaranteed GPUs to each other)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, gpus, table
from mosu.core.api import QuotaSpec
from mosu.core.credits import CreditPolicy
from mosu.core.errors import InvalidInput

CreditsExhaustedOpt = Annotated[
    CreditPolicy | None,
    typer.Option(
        "--on-credits-exhausted",
        help="When its credits run out: hold new jobs (default), run best-effort, or stop.",
        case_sensitive=False,
    ),
]

app = typer.Typer(help="Tenants (resident companies) and their quotas.", no_args_is_help=True)


def parse_pairs(values: list[str], option: str) -> dict[str, float]:
    """``["H800=4", "A100=2"]`` → ``{"H800": 4.0, "A100": 2.0}``."""
    out: dict[str, float] = {}
    for value in values:
        gpu_type, sep, number = value.partition("=")
        if not sep or not gpu_type:
            raise InvalidInput(f"expected TYPE=N, got {value!r}", field=option)
        try:
            out[gpu_type] = float(number)
        except ValueError:
            raise InvalidInput(f"{number!r} is not a number in {value!r}", field=option) from None
    return out


def quotas_from(guarantee: list[str], limit: list[str]) -> dict[str, QuotaSpec]:
    g = parse_pairs(guarantee, "--guarantee")
    lim = parse_pairs(limit, "--limit")
    return {t: QuotaSpec(guaranteed=g.get(t, 0), limit=lim.get(t)) for t in sorted({*g, *lim})}


GuaranteeOpt = Annotated[
    list[str],
    typer.Option(
        "--guarantee",
        "-g",
        metavar="TYPE=N",
        help="N GPUs of TYPE always available to it (repeatable).",
        show_default=False,
    ),
]
LimitOpt = Annotated[
    list[str],
    typer.Option(
        "--limit",
        "-l",
        metavar="TYPE=N",
        help="The most GPUs of TYPE it may hold, borrowing included (repeatable). "
        "Without one it may borrow any idle GPU of the type: no cap.",
        show_default=False,
    ),
]


def warn(warnings: list[str]) -> None:
    """Warnings go to stderr, so that ``-o json`` output stays one document."""
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)


@app.command("create")
def create(
    name: str,
    guarantee: GuaranteeOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    limit: LimitOpt = [],  # noqa: B006
    weight: Annotated[float, typer.Option(help="Share of idle GPUs among borrowers.")] = 1.0,
    cohort: Annotated[
        str | None,
        typer.Option(
            help="Cohort whose tenants lend idle guarantees to each other; default: none."
        ),
    ] = None,
    on_credits_exhausted: CreditsExhaustedOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create a tenant and print its API token (shown once)."""
    with config.client() as c:
        created = c.create_tenant(
            name,
            quotas_from(guarantee, limit),
            weight,
            cohort,
            on_credits_exhausted=on_credits_exhausted,
        )
    emit(output, created, lambda: f"tenant {created.tenant.name} created\ntoken: {created.token}")
    warn(created.warnings)


@app.command("update")
def update(
    name: str,
    cohort: Annotated[
        str | None,
        typer.Option(help='Move it to this cohort ("" for none: the default cohort).'),
    ] = None,
    no_cohort: Annotated[
        bool, typer.Option("--no-cohort", help="Move it to the default cohort.")
    ] = False,
    weight: Annotated[
        float | None, typer.Option(help="Share of idle GPUs among borrowers.")
    ] = None,
    on_credits_exhausted: CreditsExhaustedOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Change a tenant's cohort, weight or out-of-credit policy (operator only); what is
    not given is kept."""
    if no_cohort:
        if cohort:
            raise InvalidInput("give either --cohort NAME or --no-cohort", field="cohort")
        cohort = ""
    if cohort is None and weight is None and on_credits_exhausted is None:
        raise InvalidInput(
            "nothing to change: give --cohort, --no-cohort, --weight or --on-credits-exhausted"
        )
    with config.client() as c:
        tenant = c.update_tenant(
            name, weight=weight, cohort=cohort, on_credits_exhausted=on_credits_exhausted
        )
    emit(output, tenant, lambda: f"tenant {tenant.name} updated")


@app.command("quota")
def quota(
    name: str,
    guarantee: GuaranteeOpt = [],  # noqa: B006
    limit: LimitOpt = [],  # noqa: B006
    weight: Annotated[
        float | None, typer.Option(help="Share of idle GPUs among borrowers.")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Change a tenant's quotas (operator only)."""
    with config.client() as c:
        tenant = c.update_quotas(name, quotas_from(guarantee, limit), weight)
    emit(output, tenant, lambda: f"tenant {tenant.name} updated")
    warn(tenant.warnings)


@app.command("list")
def list_(output: OutputOpt = Output.TABLE) -> None:
    """Tenants with their quotas and what they hold now."""
    with config.client() as c:
        tenants = c.list_tenants()

    def render() -> object:
        rows = []
        for t in tenants:
            for q in t.quotas or [None]:
                gpu_type = q.gpu_type if q else ""
                rows.append(
                    (
                        t.name,
                        gpu_type,
                        gpus(q.guaranteed) if q else "",
                        "" if q is None else "no cap" if q.limit is None else gpus(q.limit),
                        gpus(t.allocated.get(gpu_type, 0.0)) if q else "",
                        f"{t.weight:g}",
                        t.cohort or "-",
                    )
                )
        columns = ["tenant", "gpu type", "guarantee", "limit", "using", "weight", "cohort"]
        return table(None, columns, rows)

    emit(output, tenants, render)  # type: ignore[arg-type]


@app.command("token")
def token(name: str, output: OutputOpt = Output.TABLE) -> None:
    """Issue another API token for a tenant (operator only)."""
    with config.client() as c:
        issued = c.new_token(name)
    emit(output, {"tenant": name, "token": issued}, lambda: issued)
