"""``mosu sim replay``: replay a job trace through one or more policies, side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mosu.cli.commands.credits_replay import CreditReplay
from mosu.cli.render import fitted
from mosu.core.errors import InvalidInput
from mosu.core.models import Node, Tenant
from mosu.sim.metrics import summarize
from mosu.sim.policies import (
    DEFAULT_PROFILE,
    PLACEMENTS,
    PROFILES,
    SchedulingProfile,
    build_profile,
)
from mosu.sim.records import SimLog
from mosu.sim.replay import (
    DEFAULT_CHECKPOINT_EVERY_S,
    DEFAULT_RESTART_OVERHEAD_S,
    ReplayConfig,
    replay,
)
from mosu.traces import native, philly
from mosu.traces.formats import FORMATS, load_trace
from mosu.traces.loader import TraceRequest
from mosu.traces.schema import ChangeKind, TimedChange

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


def _columns(
    policies: list[str], placements: list[str] | None
) -> list[tuple[str, SchedulingProfile]]:
    """(column name, profile) per policy, or per policy and placement when placements
    are given (``POLICY+PLACEMENT``); every name is checked before anything runs."""
    if not placements:
        return [(p, build_profile(p)) for p in policies]
    return [(f"{p}+{q}", build_profile(p, placement=q)) for p in policies for q in placements]


def _fmt(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def run(
    trace: Annotated[
        str, typer.Option("--trace", help=f"FORMAT:PATH, FORMAT one of {', '.join(FORMATS)}")
    ],
    tenants: Annotated[
        Path | None,
        typer.Option("--tenants", help="philly: philly_vc.csv; mosu: the tenants CSV"),
    ] = None,
    nodes_path: Annotated[
        Path | None,
        typer.Option(
            "--nodes",
            help="openb: the node list CSV; mosu: a nodes CSV (default: sized to the quotas)",
        ),
    ] = None,
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="nodes, e.g. 128x8:A100 (default: quotas)")
    ] = None,
    cluster_scale: Annotated[
        float,
        typer.Option(
            "--cluster-scale",
            help="multiply every node count, rounding up (openb: sample that share of nodes)",
        ),
    ] = 1.0,
    window: Annotated[
        str | None,
        typer.Option("--window", help="START:END submit window, END exclusive; dates or seconds"),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help=f"repeatable; one of {', '.join(PROFILES)}"),
    ] = None,
    placement: Annotated[
        list[str] | None,
        typer.Option(
            "--placement",
            help="repeatable; replaces each profile's placement, one column per "
            f"POLICY+PLACEMENT; one of {', '.join(PLACEMENTS)}",
        ),
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
    rates: Annotated[Path | None, typer.Option("--rates", help="rate card CSV (credits)")] = None,
    grants: Annotated[Path | None, typer.Option("--grants", help="grants CSV (credits)")] = None,
    changes_path: Annotated[
        Path | None,
        typer.Option(
            "--changes",
            help="timed quota and node changes CSV (a history export's changes.csv)",
        ),
    ] = None,
) -> None:
    """Replay a trace, time-faithfully, through each policy; compare them side by side.

    \b
    Trace formats (docs/traces.md has every rule):
      philly:PATH  Microsoft Philly's philly.csv; --tenants philly_vc.csv
      mosu:PATH    mosu's jobs CSV, one job a line: job_id, tenant, submit_s,
                   duration_s, replicas, gpus (per replica), gpu_type, priority,
                   kind, and optionally estimate_s. --tenants names its tenants
                   CSV: tenant, gpu_type, guaranteed, limit, weight, and
                   optionally cohort. Without --cluster, nodes are sized to
                   the guarantees.
      openb:PATH   Alibaba's openb pod list over time (creation, scheduled and
                   deletion times); --nodes its node list CSV, --cluster-scale
                   to sample nodes so the cluster queues."""
    columns = _columns(list(policy or [DEFAULT_PROFILE]), placement)
    if checkpoint_every < 0 or restart_overhead < 0:
        raise InvalidInput("--checkpoint-every and --restart-overhead must be >= 0")
    start, end = parse_window(window) if window else (None, None)
    request = TraceRequest(Path(), tenants, nodes_path, cluster_scale, start, end)
    workload = load_trace(trace, request)
    jobs, tenant_list, nodes = workload.jobs, workload.tenants, workload.nodes
    if cluster:
        nodes = native.parse_cluster_spec(cluster)
    changes = native.load_changes(changes_path) if changes_path else []
    _check_changes(changes, tenant_list, nodes)
    credit_replay = CreditReplay.from_options(rates, grants, tenant_list, jobs)
    console = Console(stderr=True)
    for note in workload.notes:
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
        for name, profile in columns:
            task = bar.add_task(name, total=len(jobs))
            last = [0]

            def tick(done: int, total: int, task: int = task, last: list[int] = last) -> None:
                if done - last[0] >= PROGRESS_EVERY or done == total:
                    last[0] = done
                    bar.update(task, completed=done)

            book = credit_replay.book() if credit_replay else None
            result = replay(
                jobs,
                tenant_list,
                nodes,
                profile,
                config,
                progress=tick,
                credits=book,
                changes=changes,
            )
            if credit_replay and book:
                credit_replay.record(name, book)
            bar.update(task, completed=len(jobs))
            logs[name] = result.log
            summaries[name] = summarize(result.log)
            (out / f"decisions-{name}.log").write_text("\n".join(result.decisions) + "\n")
    (out / "replay.json").write_text(json.dumps({"policies": summaries}, indent=2) + "\n")
    _print_tables(summaries)
    _plot(logs, out)
    if credit_replay:
        credit_replay.write(out, console)
    console.print(f"wrote {out / 'replay.json'} and plots in {out}")


def _check_changes(
    changes: Sequence[TimedChange], tenants: Sequence[Tenant], nodes: Sequence[Node]
) -> None:
    """Every timed change names a tenant or node of the replay (one line otherwise)."""
    known = {t.name for t in tenants}, {n.name for n in nodes}
    for c in changes:
        node = c.kind is ChangeKind.NODE
        if c.subject not in known[node]:
            what = "node" if node else "tenant"
            raise InvalidInput(f"a {c.kind} change names no {what} {c.subject!r}", field="changes")


def _print_tables(summaries: dict[str, dict]) -> None:
    console = Console()
    table = Table(title="policies side by side")
    cols = [
        ("avg JCT s", "avg_jct_s", 0),
        ("p99 JCT s", "p99_jct_s", 0),
        ("avg queue s", "avg_queue_s", 0),
        ("p99 queue s", "p99_queue_s", 0),
        ("gang≥16 p99 queue s", "large_gang_p99_queue_s", 0),
        ("util", "utilization", 3),
        ("quota att.", "quota_attainment", 3),
        ("reclaim p99 s", "reclaim_p99_s", 0),
        ("Jain", "jain_fairness", 3),
        ("preempt", "preemptions", 0),
        ("lost GPU-h", "lost_gpu_s", 0),
        ("never started", "unstarted", 0),
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
    console.print(fitted(table))
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
        console.print(fitted(per))


def _plot(logs: dict[str, SimLog], out: Path) -> None:
    from mosu.sim import plots

    plots.plot_jct_cdf(logs, out / "jct_cdf.png")
    plots.plot_utilization(logs, out / "utilization.png")
    for name, log in logs.items():
        plots.plot_tenant_usage(log, out / f"usage-{name}.png")


def register(sim_app: typer.Typer) -> None:
    sim_app.command("replay")(run)
