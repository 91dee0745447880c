"""``mosu sim replay``: replay a job trace through one or more policies, side by side."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mosu.core.errors import InvalidInput
from mosu.core.models import Node, Tenant
from mosu.engine.profiles import DEFAULT_PROFILE, PROFILES, build_profile
from mosu.sim.metrics import summarize
from mosu.sim.records import SimLog
from mosu.sim.replay import (
    DEFAULT_CHECKPOINT_EVERY_S,
    DEFAULT_RESTART_OVERHEAD_S,
    ReplayConfig,
    replay,
)
from mosu.traces import native, philly
from mosu.traces.schema import TraceJob

FORMATS = ("philly", "mosu")
PROGRESS_EVERY = 200


def _bound(text: str, what: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return philly.parse_timestamp(text)
    except ValueError:
        raise InvalidInput(
            f"bad {what} {text!r}: expected seconds or a date like 2017-10-01", field="window"
        ) from None


def parse_window(text: str) -> tuple[float | None, float | None]:
    """``START:END`` (END exclusive); each side seconds or a date, either may be empty."""
    for i, ch in enumerate(text):
        if ch != ":":
            continue
        try:
            return _bound(text[:i], "start"), _bound(text[i + 1 :], "end")
        except InvalidInput:
            continue
    raise InvalidInput(f"bad window {text!r}: expected START:END", field="window")


def _load(
    trace: str,
    tenants_path: Path | None,
    cluster: str | None,
    scale: float,
    window: tuple[float | None, float | None],
    nodes_path: Path | None = None,
) -> tuple[list[TraceJob], list[Tenant], list[Node], str]:
    fmt, sep, path = trace.partition(":")
    if not sep or fmt not in FORMATS or not path:
        raise InvalidInput(
            f"bad trace {trace!r}: expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}",
            field="trace",
        )
    if not scale > 0:
        raise InvalidInput(f"must be > 0, got {scale}", field="cluster-scale")
    start, end = window
    note = ""
    if fmt == "philly":
        if tenants_path is None:
            raise InvalidInput("a philly trace needs --tenants philly_vc.csv", field="tenants")
        vcs = philly.load_vcs(tenants_path)
        jobs, dropped = philly.select(philly.load_jobs(path), vcs=vcs, start=start, end=end)
        tenants, nodes = philly.build_cluster(vcs, scale=scale)
        if dropped:
            note = "dropped jobs of VCs without a quota: " + ", ".join(
                f"{vc} ({n})" for vc, n in dropped.items()
            )
    else:
        if tenants_path is None:
            raise InvalidInput("a mosu trace needs --tenants TENANTS.csv", field="tenants")
        tenants = native.load_tenants(tenants_path)
        jobs = [
            j
            for j in native.load_jobs(path)
            if (start is None or j.submit_s >= start) and (end is None or j.submit_s < end)
        ]
        nodes = native.load_nodes(nodes_path) if nodes_path else native.default_cluster(tenants)
        if scale != 1.0:
            nodes = _scaled(nodes, scale)
    if cluster:
        nodes = native.parse_cluster_spec(cluster)
    if not jobs:
        raise InvalidInput(f"{path}: no job in the chosen window", field="window")
    return jobs, tenants, nodes, note


def _scaled(nodes: list[Node], scale: float) -> list[Node]:
    by_type: dict[str, list[Node]] = {}
    for n in nodes:
        by_type.setdefault(n.gpu_type, []).append(n)
    out: list[Node] = []
    for group in by_type.values():
        count = math.ceil(len(group) * scale)
        out.extend(group[:count])
        for k in range(len(group), count):
            out.append(replace(group[-1], name=f"{group[-1].name}-x{k}"))
    return out


def _fmt(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def run(
    trace: Annotated[str, typer.Option("--trace", help="FORMAT:PATH, FORMAT philly or mosu")],
    tenants: Annotated[
        Path | None,
        typer.Option("--tenants", help="philly: philly_vc.csv; mosu: the tenants CSV"),
    ] = None,
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="nodes, e.g. 128x8:A100 (default: quotas)")
    ] = None,
    nodes_file: Annotated[
        Path | None,
        typer.Option("--nodes", help="mosu: a nodes CSV (default: just enough for the quotas)"),
    ] = None,
    cluster_scale: Annotated[
        float, typer.Option("--cluster-scale", help="multiply every node count, rounding up")
    ] = 1.0,
    window: Annotated[
        str | None,
        typer.Option("--window", help="START:END submit window, END exclusive; dates or seconds"),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help=f"repeatable; one of {', '.join(PROFILES)}"),
    ] = None,
    checkpoint_every: Annotated[
        float,
        typer.Option("--checkpoint-every", help="seconds between checkpoints (0: continuous)"),
    ] = DEFAULT_CHECKPOINT_EVERY_S,
    restart_overhead: Annotated[
        float, typer.Option("--restart-overhead", help="seconds a restarted job spends resuming")
    ] = DEFAULT_RESTART_OVERHEAD_S,
    out: Annotated[Path, typer.Option("--out", help="directory for replay.json and plots")] = Path(
        "out"
    ),
) -> None:
    """Replay a trace, time-faithfully, through each policy; compare them side by side."""
    names = list(policy or [DEFAULT_PROFILE])
    profiles = [build_profile(n) for n in names]
    if checkpoint_every < 0 or restart_overhead < 0:
        raise InvalidInput("--checkpoint-every and --restart-overhead must be >= 0")
    bounds = parse_window(window) if window else (None, None)
    jobs, tenant_list, nodes, note = _load(
        trace, tenants, cluster, cluster_scale, bounds, nodes_file
    )
    console = Console(stderr=True)
    if note:
        console.print(note)
    gpus = sum(n.gpus for n in nodes)
    console.print(
        f"{len(jobs):,} jobs, {len(tenant_list)} tenants, {len(nodes)} nodes, {gpus} GPUs"
    )
    config = ReplayConfig(checkpoint_every, restart_overhead)
    out.mkdir(parents=True, exist_ok=True)
    logs: dict[str, SimLog] = {}
    summaries: dict[str, dict] = {}
    with Progress(
        TextColumn("{task.description:>14}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} jobs"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        for name, profile in zip(names, profiles, strict=True):
            task = bar.add_task(name, total=len(jobs))
            last = [0]

            def tick(done: int, total: int, task: int = task, last: list[int] = last) -> None:
                if done - last[0] >= PROGRESS_EVERY or done == total:
                    last[0] = done
                    bar.update(task, completed=done)

            result = replay(jobs, tenant_list, nodes, profile, config, progress=tick)
            bar.update(task, completed=len(jobs))
            logs[name] = result.log
            summaries[name] = summarize(result.log)
            (out / f"decisions-{name}.log").write_text("\n".join(result.decisions) + "\n")
    (out / "replay.json").write_text(json.dumps({"policies": summaries}, indent=2) + "\n")
    _print_tables(summaries)
    _plot(logs, out)
    console.print(f"wrote {out / 'replay.json'} and plots in {out}")


def _print_tables(summaries: dict[str, dict]) -> None:
    console = Console()
    table = Table(title="policies side by side")
    cols = [
        ("avg JCT s", "avg_jct_s", 0),
        ("p99 JCT s", "p99_jct_s", 0),
        ("avg queue s", "avg_queue_s", 0),
        ("gang≥16 p99 queue s", "large_gang_p99_queue_s", 0),
        ("util", "utilization", 3),
        ("quota att.", "quota_attainment", 3),
        ("reclaim p99 s", "reclaim_p99_s", 0),
        ("Jain", "jain_fairness", 3),
        ("preempt", "preemptions", 0),
        ("lost GPU-h", "lost_gpu_s", 0),
    ]
    table.add_column("policy")
    for title, _, _ in cols:
        table.add_column(title, justify="right")
    for name, s in summaries.items():
        row = []
        for _, key, digits in cols:
            value = s.get(key)
            if key == "lost_gpu_s" and value is not None:
                value = value / 3600
            row.append(_fmt(value, digits))
        table.add_row(name, *row)
    console.print(table)
    for name, s in summaries.items():
        per = Table(title=f"{name}: per tenant")
        for c in ("tenant", "jobs", "avg JCT s", "avg queue s", "quota att."):
            per.add_column(c, justify="right")
        for tenant, t in s.get("tenants", {}).items():
            per.add_row(
                tenant,
                _fmt(t.get("jobs")),
                _fmt(t.get("avg_jct_s")),
                _fmt(t.get("avg_queue_s")),
                _fmt(t.get("quota_attainment"), 3),
            )
        console.print(per)


def _plot(logs: dict[str, SimLog], out: Path) -> None:
    from mosu.sim import plots

    plots.plot_jct_cdf(logs, out / "jct_cdf.png")
    plots.plot_utilization(logs, out / "utilization.png")
    for name, log in logs.items():
        plots.plot_tenant_usage(log, out / f"usage-{name}.png")


def register(sim_app: typer.Typer) -> None:
    sim_app.command("replay")(run)
