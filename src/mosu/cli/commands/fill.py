"""``mosu sim fill``: the FGD paper's fill experiment on openb node and pod lists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mosu.core.errors import InvalidInput
from mosu.sim.fill import DEFAULT_INFLATION, FillRun, gpus, run_fill, summarize, workload_size
from mosu.sim.policies import FILL_PLACEMENTS, POLICIES
from mosu.traces.openb import load_nodes, load_pods

FIRST_SEED = 42
"""The paper's experiments use seeds 42, 43, ..."""
PROGRESS_EVERY = 256


def fill(
    nodes: Annotated[Path, typer.Option("--nodes", help="openb node list CSV")],
    pods: Annotated[Path, typer.Option("--pods", help="openb pod list CSV")],
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help=f"placement policy, repeatable ({', '.join(POLICIES)})"),
    ] = None,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds", help="How many seeded runs per policy: N runs with seeds 42 .. 41+N."
        ),
    ] = 10,
    inflation: Annotated[
        float, typer.Option("--inflation", help="workload GPU request / cluster GPU capacity")
    ] = DEFAULT_INFLATION,
    out: Annotated[Path, typer.Option("--out", help="directory for fill.json and fill.png")] = Path(
        "out"
    ),
) -> None:
    """Place a seeded workload pod by pod until it is 1.3x the cluster; report unallocated GPU."""
    names = list(policy or FILL_PLACEMENTS)
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise InvalidInput(
            f"unknown placement {unknown[0]!r}; choose one of: {', '.join(POLICIES)}",
            field="policy",
        )
    if seeds < 1:
        raise InvalidInput("--seeds must be at least 1")
    if not inflation > 0:
        raise InvalidInput("--inflation must be > 0")
    node_list = load_nodes(nodes)
    pod_list = load_pods(pods)
    if not gpus(node_list):
        raise InvalidInput(f"{nodes}: the node list has no GPU")
    seed_list = list(range(FIRST_SEED, FIRST_SEED + seeds))
    console = Console(stderr=True)
    runs: dict[str, list[FillRun]] = {n: [] for n in names}
    per_run = workload_size(pod_list, node_list, inflation)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} pods"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("fill", total=per_run * len(names) * len(seed_list))
        for name in names:
            for seed in seed_list:
                progress.update(task, description=f"{name} seed {seed}")
                count = 0

                def tick() -> None:
                    nonlocal count
                    count += 1
                    if count % PROGRESS_EVERY == 0:
                        progress.advance(task, PROGRESS_EVERY)

                runs[name].append(
                    run_fill(node_list, pod_list, name, seed, inflation=inflation, on_pod=tick)
                )
    result = {
        "experiment": "fill",
        "nodes": str(nodes),
        "pods": str(pods),
        "gpus": gpus(node_list),
        "inflation": inflation,
        "seeds": seed_list,
        "policies": {name: summarize(rs) for name, rs in runs.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1)
    # One [arrived, allocated] pair per line keeps the file short and diffable.
    text = re.sub(r"\[\n\s+(-?[\d.]+),\n\s+(-?[\d.]+)\n\s+\]", r"[\1, \2]", text)
    (out / "fill.json").write_text(text + "\n")
    _plot(result, out / "fill.png")
    _print_table(result)
    console.print(f"wrote {out / 'fill.json'} and {out / 'fill.png'}", soft_wrap=True)


def _print_table(result: dict) -> None:
    table = Table(title=f"unallocated GPU % at 100 % arrived ({len(result['seeds'])} seeds)")
    for col in ("policy", "mean", "sd", "min", "max"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name, entry in result["policies"].items():
        s = entry["unallocated_pct_at_100"]
        table.add_row(name, *(f"{s[k]:.2f}" for k in ("mean", "sd", "min", "max")))
    Console().print(table)


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, entry in result["policies"].items():
        xs = [p for p, _ in entry["curve"]]
        ys = [100 - a for _, a in entry["curve"]]
        mean = entry["unallocated_pct_at_100"]["mean"]
        ax.plot(xs, ys, label=f"{name} ({mean:.2f} %)")
    ax.axvline(100, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("arrived workload (% of GPU capacity)")
    ax.set_ylabel("unallocated GPU (%)")
    ax.set_xlim(
        60, max((p for e in result["policies"].values() for p, _ in e["curve"]), default=130)
    )
    ax.set_ylim(0, 45)
    ax.set_title(f"fill: {Path(result['pods']).name}, {result['gpus']} GPUs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def register(sim_app: typer.Typer) -> None:
    sim_app.command("fill")(fill)
