"""``mosu server``: the control plane with an executor, on any database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mosu.cli.commands.up import (
    CgroupOpt,
    ExecutorOpt,
    GpuVendorOpt,
    HomeRootOpt,
    RayAddressOpt,
    SandboxOpt,
    SimNodesOpt,
    run,
)


def server(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", envvar="MOSU_DATABASE_URL", help="SQLAlchemy URL (PostgreSQL ok)."
        ),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", envvar="MOSU_DATA_DIR", help="Job logs (and SQLite).")
    ] = Path("~/.mosu"),
    host: Annotated[str, typer.Option(envvar="MOSU_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="MOSU_PORT")] = 8765,
    grace: Annotated[float, typer.Option(envvar="MOSU_GRACE_S")] = 30.0,
    gpus: Annotated[int | None, typer.Option(help="Declare this machine with N GPUs.")] = None,
    gpu_type: Annotated[str | None, typer.Option("--gpu-type")] = None,
    gpu_vendor: GpuVendorOpt = None,
    node_name: Annotated[str | None, typer.Option()] = None,
    profile: Annotated[str, typer.Option(envvar="MOSU_PROFILE")] = "mosu",
    placement: Annotated[
        str | None,
        typer.Option(
            envvar="MOSU_PLACEMENT", help="Placement instead of the profile's (mosu policy list)."
        ),
    ] = None,
    min_runtime: Annotated[float | None, typer.Option(envvar="MOSU_MIN_RUNTIME_S")] = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    sandbox: SandboxOpt = "auto",
    home_root: HomeRootOpt = None,
    cgroup: CgroupOpt = "auto",
    nodes: SimNodesOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            envvar="MOSU_WORKERS",
            help="API processes sharing the port (the scheduler runs in one more).",
        ),
    ] = 1,
) -> None:
    """Serve the API and schedule; nodes are registered through the API (or --gpus).
    The scheduler runs in a process of its own; --workers N serves the API from N
    processes (PostgreSQL recommended). Stopping it leaves running jobs running for the
    next server to adopt."""
    run(
        workers=workers,
        sandbox=sandbox,
        home_root=home_root,
        cgroup=cgroup,
        data_dir=data_dir,
        database_url=database_url,
        host=host,
        port=port,
        grace=grace,
        gpus=gpus,
        gpu_type=gpu_type,
        gpu_vendor=gpu_vendor,
        node_name=node_name,
        declare_node=gpus is not None,
        save_config=False,
        profile=profile,
        placement=placement,
        min_runtime=min_runtime,
        executor=executor,
        ray_address=ray_address,
        sim_nodes=nodes,
    )
