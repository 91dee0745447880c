"""Plots: files are real PNGs, series reduction is exact, the backend is untouched."""

from __future__ import annotations

import numpy as np
import pytest

from mosu.sim import plots
from mosu.sim.records import JobOutcome, SimLog, UsageSample

PNG = b"\x89PNG\r\n\x1a\n"


def busy_log(n: int = 300, tenants: int = 12) -> SimLog:
    rng = np.random.default_rng(0)
    outcomes = []
    usage = []
    for i in range(n):
        submit = float(i * 10)
        start = submit + float(rng.exponential(50))
        duration = float(rng.lognormal(5, 1.5))
        tenant = f"t{i % tenants}"
        outcomes.append(
            JobOutcome(f"j{i}", tenant, "A100", 1000, submit, start, start + duration, duration)
        )
    for k in range(2 * n):
        tenant = f"t{k % tenants}"
        alloc = int(rng.integers(0, 4)) * 1000
        usage.append(UsageSample(float(k * 5), tenant, "A100", alloc, alloc + 1000))
    return SimLog(
        outcomes=tuple(outcomes),
        usage=tuple(usage),
        capacity_milli=tenants * 4000,
        start_s=0.0,
        end_s=float(2 * n * 5),
        guarantees={(f"t{i}", "A100"): 2000 for i in range(tenants)},
        weights={},
    )


def empty_log() -> SimLog:
    return SimLog((), (), 8000, 0.0, 100.0, {}, {})


def test_plots_write_png_files(tmp_path):
    log = busy_log()
    results = {"mosu": log, "fifo": busy_log(200)}
    plots.plot_jct_cdf(results, tmp_path / "jct.png")
    plots.plot_utilization(results, tmp_path / "util.png")
    plots.plot_tenant_usage(log, tmp_path / "sub" / "tenants.png", top=5)
    for name in ("jct.png", "util.png", "sub/tenants.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG), name
        assert len(data) > 10_000, name


def test_plots_of_empty_runs_still_write_files(tmp_path):
    plots.plot_jct_cdf({"none": empty_log()}, tmp_path / "jct.png")
    plots.plot_utilization({"none": empty_log()}, tmp_path / "util.png")
    plots.plot_tenant_usage(empty_log(), tmp_path / "tenants.png")
    for name in ("jct.png", "util.png", "tenants.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)


def test_plotting_leaves_the_pyplot_backend_alone(tmp_path):
    import matplotlib

    before = matplotlib.rcParams["backend"]
    plots.plot_utilization({"a": busy_log(50)}, tmp_path / "u.png")
    assert matplotlib.rcParams["backend"] == before


def test_binned_step_mean_is_exact():
    # 0 until t=10, then 4 until t=30, then 1 until the end at 40.
    centres, means = plots.binned_step_mean(
        np.array([10.0, 30.0]), np.array([4.0, 1.0]), 0.0, 40.0, bins=4
    )
    assert centres.tolist() == [5.0, 15.0, 25.0, 35.0]
    assert means.tolist() == [0.0, 4.0, 4.0, 1.0]
    _, halves = plots.binned_step_mean(
        np.array([10.0, 30.0]), np.array([4.0, 1.0]), 0.0, 40.0, bins=2
    )
    assert halves.tolist() == [2.0, 2.5]


def test_binning_keeps_the_time_average():
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 1000, 5000))
    values = rng.integers(0, 100, 5000).astype(float)
    centres, means = plots.binned_step_mean(times, values, 0.0, 1000.0, bins=100)
    exact = np.sum(values * np.diff(np.append(times, 1000.0))) / 1000.0
    assert centres.size == 100
    assert means.mean() == pytest.approx(exact)


def test_cdf_points_are_capped():
    x, y = plots.cdf_points(np.arange(100_000), max_points=500)
    assert x.size == y.size == 500
    assert y[0] == 0.0 and y[-1] == 1.0
    small_x, small_y = plots.cdf_points(np.array([3.0, 1.0, 2.0]))
    assert small_x.tolist() == [1.0, 2.0, 3.0]
    assert small_y.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_jct_cdf_counts_unfinished_jobs_against_the_policy():
    outcomes = (
        JobOutcome("a", "t", "A100", 1000, 0.0, 0.0, 10.0, 10.0),
        JobOutcome("b", "t", "A100", 1000, 0.0, 5.0, 30.0, 25.0),
        JobOutcome("c", "t", "A100", 1000, 0.0, 5.0, None, 25.0),
        JobOutcome("d", "t", "A100", 1000, 0.0, None, None, 25.0),
    )
    x, y = plots.jct_cdf(SimLog(outcomes, (), 8000, 0.0, 100.0, {}, {}))
    assert x.tolist() == [10.0, 30.0]
    assert y.tolist() == [0.25, 0.5]
