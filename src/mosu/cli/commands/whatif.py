"""``mosu whatif``: replay the cluster's own history as configured and with changes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mosu.cli.commands import history as history_cmd
from mosu.cli.render import Output, OutputOpt, table
from mosu.core.errors import InvalidInput
from mosu.sim.whatif import (
    Changes,
    History,
    load_history,
    parse_cohort,
    parse_quota_change,
    parse_weight,
    plan_whatif,
    run_whatif,
)

COLUMNS = (
    ("avg wait", "avg_wait_s", "time"),
    ("p95 wait", "p95_wait_s", "time"),
    ("avg JCT", "avg_jct_s", "time"),
    ("attainment", "quota_attainment", "ratio"),
    ("borrowed GPU-h", "borrowed_gpu_h", "number"),
    ("preemptions", "preemptions", "count"),
    ("lost GPU-h", "lost_gpu_h", "number"),
)


def _show(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "time":
        return f"{value / 60:,.1f}m" if value >= 60 else f"{value:,.1f}s"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "count":
        return f"{value:,}"
    return f"{value:,.1f}"


def _pair(before: Any, after: Any, kind: str) -> str:
    return f"{_show(before, kind)} → {_show(after, kind)}"


def comparison_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per tenant, then the overall row: each cell ``before → after``."""
    before, after = report["before"], report["after"]
    rows = []
    for tenant in sorted(set(before["tenants"]) | set(after["tenants"])):
        b, a = before["tenants"].get(tenant, {}), after["tenants"].get(tenant, {})
        cells = [_pair(b.get(key), a.get(key), kind) for _, key, kind in COLUMNS]
        rows.append([tenant, str(b.get("jobs", a.get("jobs", 0))), *cells])
    b, a = before["overall"], after["overall"]
    cells = [_pair(b.get(key), a.get(key), kind) for _, key, kind in COLUMNS]
    rows.append(["all (min attainment)", str(b["jobs"]), *cells])
    return rows


def fidelity_line(report: dict[str, Any]) -> str:
    f = report["fidelity"]
    if not f["jobs"]:
        return "fidelity: no job both started for real and in the replay"
    return (
        f"fidelity of the as-configured replay over {f['jobs']:,} jobs: wait error median "
        f"{_show(f['median_error_s'], 'time')}, p90 {_show(f['p90_error_s'], 'time')} "
        f"(real median wait {_show(f['median_real_wait_s'], 'time')}, replayed "
        f"{_show(f['median_replayed_wait_s'], 'time')})"
    )


def whatif(
    history: Annotated[
        Path | None,
        typer.Option("--history", help="an export directory (default: fetch from the server)"),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="window start when fetching: 30d, a date")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="window end when fetching")] = None,
    set_guarantee: Annotated[
        list[str] | None, typer.Option("--set-guarantee", help="TENANT=TYPE:GPUS, repeatable")
    ] = None,
    set_limit: Annotated[
        list[str] | None,
        typer.Option("--set-limit", help="TENANT=TYPE:GPUS or TENANT=TYPE:none, repeatable"),
    ] = None,
    set_weight: Annotated[
        list[str] | None, typer.Option("--set-weight", help="TENANT=WEIGHT, repeatable")
    ] = None,
    cohort: Annotated[
        list[str] | None,
        typer.Option("--cohort", help="TENANT=COHORT (empty: the default cohort), repeatable"),
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="scheduling profile")] = None,
    placement: Annotated[
        str | None, typer.Option("--placement", help="placement policy, e.g. fgd, bestfit")
    ] = None,
    add_nodes: Annotated[
        list[str] | None, typer.Option("--add-nodes", help="COUNTxGPUS:TYPE, repeatable")
    ] = None,
    remove_node: Annotated[
        list[str] | None, typer.Option("--remove-node", help="NAME, repeatable")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="directory for whatif.json and waits.png")
    ] = Path("whatif-out"),
    output: OutputOpt = Output.TABLE,
) -> None:
    """Replay a window of the cluster's history twice, as configured and with the
    changes, and print the difference per tenant and overall (operator)."""
    changes = Changes(
        guarantees=tuple(_quota(x, "set-guarantee") for x in set_guarantee or ()),
        limits=tuple(parse_quota_change(x, "set-limit") for x in set_limit or ()),
        weights=tuple(parse_weight(x) for x in set_weight or ()),
        cohorts=tuple(parse_cohort(x) for x in cohort or ()),
        profile=profile,
        placement=placement,
        add_nodes=tuple(add_nodes or ()),
        remove_nodes=tuple(remove_node or ()),
    )
    if not changes:
        raise InvalidInput("no change given: say what to change (see --help)", field="changes")
    if history is not None and (since or until):
        raise InvalidInput("--since/--until select what to fetch; not with --history")
    loaded = load_history(history) if history is not None else _fetch(since, until)
    plan = plan_whatif(loaded, changes)
    console = Console(stderr=True)
    console.print(f"{len(plan.jobs):,} jobs, {len(loaded.nodes)} nodes; replaying twice")
    result = run_whatif(plan)
    out.mkdir(parents=True, exist_ok=True)
    (out / "whatif.json").write_text(json.dumps(result.report, indent=2) + "\n")
    from mosu.sim.plots import plot_wait_comparison

    plot_wait_comparison(result.before, result.after, out / "waits.png")
    if output == Output.JSON:
        print(json.dumps(result.report, indent=2))
        return
    from mosu.cli.render import console as stdout

    title = "as configured → " + "; ".join(result.report["changes"])
    cols = ["tenant", "jobs", *(c for c, _, _ in COLUMNS)]
    stdout.print(table(title, cols, comparison_rows(result.report)))
    b, a = result.report["before"]["overall"], result.report["after"]["overall"]
    print(f"utilization {_pair(b['utilization'], a['utilization'], 'ratio')}")
    print(fidelity_line(result.report))
    if result.report["left_out_cancelled_before_start"]:
        print(
            f"left out {result.report['left_out_cancelled_before_start']:,} jobs cancelled "
            "before they started"
        )
    print(f"wrote {out / 'whatif.json'} and {out / 'waits.png'}")


def _quota(text: str, option: str) -> tuple[str, str, int]:
    tenant, gpu_type, milli = parse_quota_change(text, option)
    assert milli is not None  # only a limit may be "none"
    return tenant, gpu_type, milli


def _fetch(since: str | None, until: str | None) -> History:
    exported = history_cmd.fetch(since, until)
    with tempfile.TemporaryDirectory(prefix="mosu-whatif-") as where:
        history_cmd.write(exported, Path(where))
        return load_history(where)
