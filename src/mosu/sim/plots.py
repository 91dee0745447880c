"""PNG plots of simulation runs: JCT CDFs, utilization and per-tenant usage.

Each function draws on its own ``matplotlib.figure.Figure`` rendered by the Agg
canvas, so nothing here selects or changes the process-wide pyplot backend and
importing this module does not import matplotlib at all. Long series are
reduced before drawing: CDFs to ``MAX_CDF_POINTS`` quantiles, time series to
``MAX_BINS`` bins holding the exact time-weighted mean of the step series in
each bin. All numbers come from ``mosu.sim.metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from mosu.core.models import GPU_MILLI
from mosu.sim import metrics
from mosu.sim.records import SimLog

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_CDF_POINTS = 2000
MAX_BINS = 1000
TOP_TENANTS = 8
"""Tenants drawn by name in a usage plot; the rest are summed as "others"."""


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path | BinaryIO) -> None:
    if isinstance(path, str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def cdf_points(values: np.ndarray, max_points: int = MAX_CDF_POINTS) -> tuple[np.ndarray, ...]:
    """(x, F(x)) of the empirical CDF, at most ``max_points`` quantiles."""
    data = np.sort(np.asarray(values, dtype=float))
    if data.size <= max_points:
        return data, np.arange(1, data.size + 1) / data.size
    probs = np.linspace(0.0, 1.0, max_points)
    return np.quantile(data, probs), probs


def jct_cdf(log: SimLog, max_points: int = MAX_CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(JCT, fraction of all jobs finished within it); unfinished jobs keep it below 1."""
    jcts = np.array([j for o in log.outcomes if (j := metrics.jct_s(o)) is not None])
    if jcts.size == 0:
        return np.empty(0), np.empty(0)
    x, y = cdf_points(np.maximum(jcts, 1e-3), max_points)  # log axis: no zeros
    return x, y * jcts.size / len(log.outcomes)


def binned_step_mean(
    times: np.ndarray, values: np.ndarray, start: float, end: float, bins: int = MAX_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact time-weighted mean of a step series in equal bins over [start, end].

    ``values[i]`` holds from ``times[i]`` to ``times[i + 1]`` (the last to
    ``end``); before ``times[0]`` the series is 0. Returns bin centres and means.
    """
    edges = np.linspace(start, end, bins + 1)
    t = np.concatenate(([start], np.asarray(times, dtype=float)))
    v = np.concatenate(([0.0], np.asarray(values, dtype=float)))
    # Integral of the step series from start up to each change time.
    cumulative = np.concatenate(([0.0], np.cumsum(v[:-1] * np.diff(t))))
    at = np.searchsorted(t, edges, side="right") - 1
    integral = cumulative[at] + v[at] * (edges - t[at])
    width = np.diff(edges)
    return (edges[:-1] + edges[1:]) / 2, np.diff(integral) / width


def _hours(log: SimLog, centres: np.ndarray) -> np.ndarray:
    return (centres - log.start_s) / 3600.0


def plot_jct_cdf(results: Mapping[str, SimLog], path: str | Path) -> None:
    """One CDF of job completion time per policy, log-scaled seconds.

    The fraction is of all jobs, so a policy that leaves jobs unfinished ends
    below 1 instead of looking better for finishing only the easy ones.
    """
    figure = _figure()
    axes = figure.add_subplot()
    for name, log in results.items():
        x, y = jct_cdf(log)
        if x.size == 0:
            continue
        finished = sum(o.finish_s is not None for o in log.outcomes)
        label = f"{name} ({finished} of {len(log.outcomes)} finished)"
        axes.step(x, y, where="post", label=label)
    axes.set_xscale("log")
    axes.set_xlabel("job completion time (s)")
    axes.set_ylabel("fraction of jobs finished within")
    axes.set_ylim(0, 1)
    axes.grid(True, which="both", alpha=0.3)
    if axes.lines:
        axes.legend(loc="lower right")
    axes.set_title("JCT CDF")
    _save(figure, path)


def plot_utilization(results: Mapping[str, SimLog], path: str | Path) -> None:
    """Allocated fraction of the cluster's GPUs over time, one line per policy."""
    figure = _figure()
    axes = figure.add_subplot()
    for name, log in results.items():
        if log.end_s <= log.start_s or log.capacity_milli <= 0:
            continue
        times, total = metrics.total_allocation_series(log)
        centres, mean = binned_step_mean(times, total, log.start_s, log.end_s)
        util = metrics.utilization(log) or 0.0
        axes.plot(_hours(log, centres), mean / log.capacity_milli, label=f"{name} ({util:.1%})")
    axes.set_xlabel("hours since start")
    axes.set_ylabel("allocated GPU fraction")
    axes.set_ylim(0, 1.05)
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(loc="lower right")
    axes.set_title("GPU utilization over time")
    _save(figure, path)


def plot_tenant_usage(log: SimLog, path: str | Path, *, top: int = TOP_TENANTS) -> None:
    """Stacked allocation per tenant (GPUs) over time, guarantees as dashed lines.

    The ``top`` tenants by GPU-seconds are drawn by name, the rest summed as
    "others"; each named tenant's guarantee (over all GPU types) is a dashed
    line in its colour, and the cluster's capacity a solid black line.
    """
    figure = _figure(9.0, 5.0)
    axes = figure.add_subplot()
    if log.end_s > log.start_s:
        binned = {
            name: binned_step_mean(times, values, log.start_s, log.end_s)
            for name, (times, values) in metrics.allocation_series(log).items()
        }
        gpu_s = {name: float(mean.sum()) for name, (_, mean) in binned.items()}
        ranked = sorted(gpu_s, key=lambda n: (-gpu_s[n], n))
        named, rest = ranked[:top], ranked[top:]
        layers = [binned[name][1] / GPU_MILLI for name in named]
        labels = list(named)
        if rest:
            layers.append(sum(binned[name][1] for name in rest) / GPU_MILLI)
            labels.append(f"others ({len(rest)})")
        if layers:
            hours = _hours(log, next(iter(binned.values()))[0])
            colors = [f"C{i % 10}" for i in range(len(named))] + ["0.75"] * bool(rest)
            bands = axes.stackplot(hours, *layers, labels=labels, colors=colors, alpha=0.85)
            guarantees: dict[str, int] = {}
            for (tenant, _), milli in log.guarantees.items():
                guarantees[tenant] = guarantees.get(tenant, 0) + milli
            for name, band in zip(named, bands, strict=False):
                if guarantees.get(name):
                    axes.axhline(
                        guarantees[name] / GPU_MILLI,
                        color=band.get_facecolor()[0],
                        linestyle="--",
                        linewidth=1,
                    )
    axes.axhline(log.capacity_milli / GPU_MILLI, color="black", linewidth=1, label="capacity")
    axes.set_xlabel("hours since start")
    axes.set_ylabel("allocated GPUs (dashed: guarantee)")
    axes.set_ylim(0, max(1.0, log.capacity_milli / GPU_MILLI) * 1.05)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes.set_title("allocation per tenant")
    _save(figure, path)


def plot_wait_comparison(
    before: SimLog, after: SimLog, path: str | Path | BinaryIO, *, title: str = "wait per tenant"
) -> None:
    """Average (bars) and p95 (ticks) wait per tenant, as configured and changed; the
    ``TOP_TENANTS`` tenants with most jobs are drawn by name."""
    reports = [metrics.tenant_report(before)["tenants"], metrics.tenant_report(after)["tenants"]]
    ranked = sorted(reports[0], key=lambda t: (-reports[0][t]["jobs"], t))[:TOP_TENANTS]
    figure = _figure(max(6.0, 1.1 * len(ranked) + 2), 4.5)
    ax = figure.add_subplot()
    x = np.arange(len(ranked))
    width = 0.38
    for k, (label, report, colour) in enumerate(
        zip(("as configured", "changed"), reports, ("#8c8c8c", "#1f77b4"), strict=True)
    ):
        avg = [(report.get(t, {}).get("avg_wait_s") or 0.0) / 60 for t in ranked]
        p95 = [(report.get(t, {}).get("p95_wait_s") or 0.0) / 60 for t in ranked]
        pos = x + (k - 0.5) * width
        ax.bar(pos, avg, width, label=f"{label}: average", color=colour)
        ax.scatter(pos, p95, marker="_", s=400, color=colour, label=f"{label}: p95")
    ax.set_xticks(x, ranked, rotation=30, ha="right")
    ax.set_ylabel("wait (minutes)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    _save(figure, path)
