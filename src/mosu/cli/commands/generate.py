"""``mosu sim generate``: a seeded synthetic workload written in mosu's native format."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mosu.core.errors import InvalidInput
from mosu.traces import native, synthetic


class Mix(StrEnum):
    SEREN = "seren"
    KALOS = "kalos"


def generate(
    out: Annotated[Path, typer.Option("--out", help="directory for jobs.csv and tenants.csv")],
    mix: Annotated[
        Mix, typer.Option("--mix", help="seren: ~120 companies; kalos: 3 labs, large gangs")
    ] = Mix.SEREN,
    seed: Annotated[int, typer.Option("--seed", help="the generator's seed")] = 0,
    load: Annotated[float, typer.Option("--load", help="offered load, e.g. 0.7, 0.9, 1.1")] = 0.9,
    days: Annotated[float, typer.Option("--days", help="span of submissions")] = 7.0,
    gpus: Annotated[int, typer.Option("--gpus", help="cluster size in GPUs")] = 1024,
) -> None:
    """Generate a synthetic incubator workload calibrated to Acme (Seren or Kalos).

    \b
    Writes OUT/jobs.csv and OUT/tenants.csv (docs/traces.md); replay them with
      mosu sim replay --trace mosu:OUT/jobs.csv --tenants OUT/tenants.csv"""
    if load <= 0 or days <= 0 or gpus < 1:
        raise InvalidInput("--load, --days and --gpus must be positive", field="load")
    try:
        if mix == Mix.KALOS:
            tenants, jobs = synthetic.generate_kalos(seed, days=days, gpus=gpus, load=load)
        else:
            tenants, jobs = synthetic.generate(seed, days=days, gpus=gpus, load=load)
    except ValueError as e:
        raise InvalidInput(str(e), field="gpus") from None
    out.mkdir(parents=True, exist_ok=True)
    native.write_jobs(out / "jobs.csv", jobs)
    native.write_tenants(out / "tenants.csv", tenants)
    offered = synthetic.offered_load(jobs, gpus=gpus, span_s=days * 86_400.0)
    Console(stderr=True).print(
        f"{len(jobs):,} jobs, {len(tenants)} tenants, offered load {offered:.2f} -> {out}"
    )


def register(sim_app: typer.Typer) -> None:
    sim_app.command("generate")(generate)
