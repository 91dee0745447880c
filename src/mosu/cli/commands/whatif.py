"""``mosu whatif``: replay the cluster's own history as configured and with changes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mosu.cli.commands import history as history_cmd
from mosu.cli.render import Output, OutputOpt, table
from mosu.core.errors import InvalidInput
from mosu.sim.whatif import (
    Changes,
    History,
    columns,
    comparison_rows,
    fidelity_line,
    load_history,
    load_rates_file,
    pair,
    parse_cohort,
    parse_quota_change,
    parse_weight,
    plan_whatif,
    run_whatif,
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
    rates: Annotated[
        Path | None,
        typer.Option(
            "--rates",
            help="rate card CSV (resource,per_hour[,borrowed_per_hour][,from_s]) for the "
            "changed replay; credits burned are shown when any card is known",
        ),
    ] = None,
    tick: Annotated[
        float,
        typer.Option("--tick", help="seconds; >0 replays on scheduler ticks (faster), 0 exact"),
    ] = 0.0,
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
        rates=None if rates is None else load_rates_file(rates),
        rates_from="" if rates is None else str(rates),
    )
    if not changes:
        raise InvalidInput("no change given: say what to change (see --help)", field="changes")
    if history is not None and (since or until):
        raise InvalidInput("--since/--until select what to fetch; not with --history")
    loaded = load_history(history) if history is not None else _fetch(since, until)
    plan = plan_whatif(loaded, changes, tick_s=tick)
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
    cols = ["tenant", "jobs", *(c for c, _, _ in columns(result.report))]
    stdout.print(table(title, cols, comparison_rows(result.report)))
    b, a = result.report["before"]["overall"], result.report["after"]["overall"]
    print(f"utilization {pair(b['utilization'], a['utilization'], 'ratio')}")
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
