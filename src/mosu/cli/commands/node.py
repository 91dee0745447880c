"""``mosu node``: the machines of the cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, gpus, table
from mosu.core.api import NodeCreate

app = typer.Typer(help="Nodes: list, declare, drain.", no_args_is_help=True)


@app.command("list")
def list_(output: OutputOpt = Output.TABLE) -> None:
    """Every node with its GPUs and how many are in use (operator only)."""
    with config.client() as c:
        nodes = c.list_nodes()
    rows = [
        (
            n.name,
            n.gpu_type,
            n.vendor,
            n.gpus,
            gpus(n.allocated_gpus),
            n.state.value,
            f"{n.zone}/{n.rack}",
            n.sandbox or "-",
        )
        for n in nodes
    ]
    columns = ["node", "type", "vendor", "gpus", "used", "state", "rack", "sandbox"]
    emit(output, nodes, lambda: table(None, columns, rows))


@app.command("add")
def add(
    name: str,
    gpus_: Annotated[int, typer.Option("--gpus", help="GPU count.")],
    gpu_type: Annotated[str, typer.Option("--gpu-type", help="GPU type, e.g. H800.")],
    gpu_vendor: Annotated[
        str | None,
        typer.Option(
            "--gpu-vendor",
            help="Who makes the GPUs: nvidia, huawei, amd or cambricon (default: from the type).",
        ),
    ] = None,
    cpu: Annotated[float, typer.Option(help="CPU cores.")] = 0,
    memory: Annotated[str, typer.Option(help="Memory, e.g. 512Gi.")] = "0",
    topology: Annotated[str, typer.Option(help="zone/rack path.")] = "",
    output: OutputOpt = Output.TABLE,
) -> None:
    """Declare a node (or update its capacity)."""
    body = NodeCreate(
        name=name,
        gpus=gpus_,
        gpu_type=gpu_type,
        gpu_vendor=gpu_vendor,
        cpu=cpu,
        memory=memory,
        topology=topology,
    )
    with config.client() as c:
        node = c.register_node(body)
    emit(output, node, lambda: f"node {node.name}: {node.gpus} x {node.gpu_type} ({node.vendor})")


@app.command("drain")
def drain(
    name: str,
    stop_jobs: Annotated[
        bool,
        typer.Option(
            "--stop-jobs",
            help="Also stop every job running there (every process) and requeue it.",
        ),
    ] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Start nothing new on a node; running jobs finish (or stop, with --stop-jobs)."""
    with config.client() as c:
        node = c.drain_node(name, stop_jobs=stop_jobs)
    emit(output, node, lambda: f"node {node.name} is {node.state.value}")


@app.command("undrain")
def undrain(name: str, output: OutputOpt = Output.TABLE) -> None:
    """Make a drained node schedulable again."""
    with config.client() as c:
        node = c.undrain_node(name)
    emit(output, node, lambda: f"node {node.name} is {node.state.value}")
