"""``mosu service``: serve a model behind the gateway (a job spec of ``kind: service``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, table, when
from mosu.client.services import ServicesApi
from mosu.core.errors import InvalidInput
from mosu.core.jobspec import invalid_from_validation
from mosu.core.service_api import ServiceOut, ServiceScale, ServiceSpec
from mosu.documents import load_document

app = typer.Typer(
    help="Model services: replicas of a model server behind the gateway, autoscaled.",
    no_args_is_help=True,
)
TenantOpt = Annotated[str | None, typer.Option(help="The tenant (operator only).")]


def _read_spec(path: str) -> ServiceSpec:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    data = load_document(text, source=path)
    try:
        return ServiceSpec.model_validate(data, strict=False)
    except ValidationError as exc:
        raise invalid_from_validation(exc, source=path) from None


def _summary(services: list[ServiceOut]) -> object:
    rows = [
        (
            s.name,
            s.tenant,
            s.model,
            f"{s.ready}/{s.desired}",
            f"{s.min_replicas}..{s.max_replicas}",
            s.inflight,
            "approved" if s.approved else ("public" if s.public else "private"),
        )
        for s in services
    ]
    columns = ["name", "tenant", "model", "ready/wanted", "range", "in flight", "showcase"]
    return table(None, columns, rows) if rows else "no services"


@app.command("create")
def create(
    spec: Annotated[str, typer.Argument(help="A service spec file (YAML/JSON, '-' for stdin).")],
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Start serving a model: 'mosu service create service.yaml'."""
    body = _read_spec(spec)
    with config.client() as c:
        out = ServicesApi(c).create(body.model_dump(mode="json"), tenant=tenant)
    emit(output, out, lambda: f"service {out.name} serves {out.model} ({out.desired} replicas)")


@app.command("list")
def list_(output: OutputOpt = Output.TABLE) -> None:
    """Services with their ready and wanted replicas."""
    with config.client() as c:
        services = ServicesApi(c).list()
    emit(output, services, lambda: _summary(services))  # type: ignore[arg-type,return-value]


@app.command("show")
def show(name: str, tenant: TenantOpt = None, output: OutputOpt = Output.TABLE) -> None:
    """One service and each replica: its job, state, endpoint and requests in flight."""
    with config.client() as c:
        out = ServicesApi(c).show(name, tenant=tenant)
    rows = [(r.job_id, r.state, r.job_state, r.endpoint, r.inflight) for r in out.replicas]
    emit(
        output,
        out,
        lambda: table(
            f"{out.name}: {out.model}, {out.ready}/{out.desired} ready, created "
            f"{when(out.created_at)}",
            ["job", "replica", "job state", "endpoint", "in flight"],
            rows,
        ),
    )


@app.command("scale")
def scale(
    name: str,
    replicas: Annotated[int | None, typer.Option(help="Replicas wanted now.")] = None,
    min_: Annotated[int | None, typer.Option("--min", help="Fewest replicas.")] = None,
    max_: Annotated[int | None, typer.Option("--max", help="Most replicas.")] = None,
    tenant: TenantOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Change the replica range, or the replicas wanted now."""
    if replicas is None and min_ is None and max_ is None:
        raise InvalidInput("give --replicas, --min or --max", field="--replicas")
    body = ServiceScale(replicas=replicas, min=min_, max=max_)
    with config.client() as c:
        out = ServicesApi(c).scale(name, body, tenant=tenant)
    emit(
        output,
        out,
        lambda: f"{out.name}: {out.min_replicas}..{out.max_replicas}, {out.desired} wanted",
    )


@app.command("logs")
def logs(
    name: str,
    replica: Annotated[int, typer.Option(help="Which live replica, oldest first.")] = 0,
    tenant: TenantOpt = None,
) -> None:
    """The log of one of the service's live replicas."""
    with config.client() as c:
        replicas = ServicesApi(c).show(name, tenant=tenant).replicas
        if not replicas:
            raise InvalidInput(f"service {name!r} has no replica now", field="name")
        if not 0 <= replica < len(replicas):
            raise InvalidInput(f"it has {len(replicas)} replicas (0..)", field="--replica")
        chunk = c.logs(replicas[replica].job_id)
    sys.stdout.write(chunk.data)


@app.command("delete")
def delete(name: str, tenant: TenantOpt = None) -> None:
    """Stop serving: replicas drain, then stop."""
    with config.client() as c:
        ServicesApi(c).delete(name, tenant=tenant)
    print(f"service {name} deleted")


@app.command("approve")
def approve(name: str, tenant: TenantOpt = None) -> None:
    """Operator: show a public service on the showcase page."""
    with config.client() as c:
        ServicesApi(c).approve(name, True, tenant=tenant)
    print(f"service {name} is on the showcase")


@app.command("withdraw")
def withdraw(name: str, tenant: TenantOpt = None) -> None:
    """Operator: take a service off the showcase at once."""
    with config.client() as c:
        ServicesApi(c).approve(name, False, tenant=tenant)
    print(f"service {name} is off the showcase")
