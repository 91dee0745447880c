"""``mosu whatif`` on a seeded history: more guarantee must shorten a tenant's wait, the
self-check must see an exact history as exact, and bad changes are one line."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from mosu.core.models import GPU_MILLI, JobKind, Quota, Shape, Tenant
from mosu.engine.profiles import build_profile
from mosu.sim.replay import replay
from mosu.sim.whatif import REPLAY_CONFIG, on_ticks
from mosu.traces import native
from mosu.traces.schema import Ended, JobHistory, TraceJob
from tests.cli.test_platform_cli import cli_env, mosu, one_line_error  # noqa: F401

HOUR = 3600.0


def seeded_history(where: Path, seed: int = 7) -> Path:
    """Four 8-GPU H800 nodes. beta (guarantee 24) keeps the cluster busy with 8-GPU
    hour-long jobs; acme (guarantee 8) sends bursts of six 4-GPU jobs, three times its
    guarantee, so most of a burst waits for beta's jobs to end. The real starts are those
    of the as-configured replay itself, so the replay's fidelity must be exact."""
    rng = random.Random(seed)
    jobs: list[TraceJob] = []
    for i in range(60):
        submit = i * 0.4 * HOUR + rng.uniform(0, 600)
        jobs.append(
            TraceJob(f"beta-{i}", "beta", submit, HOUR * rng.uniform(0.8, 1.2), Shape(gpus=8))
        )
    for burst in range(6):
        at = burst * 4 * HOUR + 1800
        for k in range(6):
            jobs.append(
                TraceJob(
                    f"acme-{burst}-{k}",
                    "acme",
                    at + k,
                    1800 * rng.uniform(0.8, 1.2),
                    Shape(gpus=4),
                    kind=JobKind.FINETUNE,
                )
            )
    tenants = [
        Tenant("acme", (("H800", Quota(8 * GPU_MILLI)),)),
        Tenant("beta", (("H800", Quota(24 * GPU_MILLI)),)),
    ]
    nodes = native.parse_cluster_spec("4x8:H800")
    log = replay(jobs, tenants, nodes, build_profile("mosu"), REPLAY_CONFIG).log
    started = {o.job_id: o.first_start_s for o in log.outcomes}
    real = [
        dataclasses.replace(
            j,
            history=JobHistory(Ended.EXIT, started[j.id], (j.duration_s or 0.0,)),
        )
        for j in jobs
    ]
    where.mkdir(parents=True, exist_ok=True)
    native.write_jobs(where / "jobs.csv", real)
    native.write_tenants(where / "tenants.csv", tenants)
    native.write_nodes(where / "nodes.csv", nodes)
    (where / "export.json").write_text(json.dumps({"profile": "mosu", "origin": 0}))
    return where


def test_more_guarantee_shortens_the_tenants_wait(cli_env, tmp_path):  # noqa: F811
    history = seeded_history(tmp_path / "history")
    args = ["whatif", "--history", str(history), "--out", str(tmp_path / "out")]
    change = ["--set-guarantee", "acme=H800:16", "--set-guarantee", "beta=H800:16"]
    report = json.loads(mosu(*args, *change, "-o", "json", env=cli_env).stdout)
    acme_before = report["before"]["tenants"]["acme"]["avg_wait_s"]
    acme_after = report["after"]["tenants"]["acme"]["avg_wait_s"]
    assert acme_before > 0
    assert acme_after < acme_before * 0.8, (acme_before, acme_after)
    assert report["jobs"] == 96
    assert report["changes"] == ["guarantee acme H800=16", "guarantee beta H800=16"]
    fidelity = report["fidelity"]
    assert fidelity["jobs"] == 96
    assert fidelity["median_error_s"] == 0.0 and fidelity["p90_error_s"] == 0.0
    assert (tmp_path / "out" / "waits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    shown = mosu(*args, *change, env=cli_env).stdout
    acme_row = next(line for line in shown.splitlines() if line.startswith("│ acme "))
    assert f"{acme_before / 60:,.1f}m → {acme_after / 60:,.1f}m" in acme_row
    assert "wait error median 0.0s, p90 0.0s" in shown


def test_more_nodes_never_lengthen_the_average_wait(cli_env, tmp_path):  # noqa: F811
    history = seeded_history(tmp_path / "history")
    out = mosu(
        "whatif",
        "--history",
        str(history),
        "--add-nodes",
        "2x8:H800",
        "--out",
        str(tmp_path / "out"),
        "-o",
        "json",
        env=cli_env,
    ).stdout
    report = json.loads(out)
    assert report["after"]["overall"]["avg_wait_s"] < report["before"]["overall"]["avg_wait_s"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--set-guarantee", "zeta=H800:4"], "set-guarantee: unknown tenant 'zeta'"),
        (["--set-guarantee", "acme=A100:4"], "GPU type 'A100' is not in the cluster"),
        (["--set-guarantee", "acme=H800:-4"], "GPUs must be >= 0"),
        (["--set-guarantee", "acme:16"], "expected TENANT=TYPE:GPUS"),
        (["--set-limit", "acme=H800:4"], "limit 4 is below its guarantee 8"),
        (["--set-weight", "acme=0"], "must be > 0"),
        (["--remove-node", "nope"], "no node 'nope'"),
        (["--add-nodes", "4x8"], "bad cluster spec"),
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--placement", "nope"], "unknown placement 'nope'"),
        ([], "no change given"),
    ],
)
def test_bad_changes_are_one_line(cli_env, tmp_path, change, message):  # noqa: F811
    history = seeded_history(tmp_path / "history")
    args = ["whatif", "--history", str(history), "--out", str(tmp_path / "out"), *change]
    one_line_error(mosu(*args, env=cli_env, ok=False), message)


def test_on_ticks_submissions_wait_for_the_next_tick(cli_env, tmp_path):  # noqa: F811
    history = seeded_history(tmp_path / "history")
    args = ["whatif", "--history", str(history), "--out", str(tmp_path / "out")]
    change = ["--set-guarantee", "acme=H800:16", "--set-guarantee", "beta=H800:16"]
    report = json.loads(mosu(*args, *change, "--tick", "600", "-o", "json", env=cli_env).stdout)
    assert report["tick_s"] == 600
    assert report["fidelity"]["jobs"] == 96
    assert report["fidelity"]["median_error_s"] <= 600
    after = report["after"]["tenants"]["acme"]["avg_wait_s"]
    assert after < report["before"]["tenants"]["acme"]["avg_wait_s"]
    one_line_error(mosu(*args, *change, "--tick", "-1", env=cli_env, ok=False), "tick")


def test_on_ticks_moves_submissions_up_and_rounds_run_times():
    jobs = [
        TraceJob("a", "t", 61.0, 89.0, Shape(gpus=1)),
        TraceJob("b", "t", 120.0, 91.0, Shape(gpus=1)),
        TraceJob("c", "t", 0.0, 20.0, Shape(gpus=1)),
    ]
    ticked = on_ticks(jobs, 60.0)
    assert [(j.submit_s, j.duration_s) for j in ticked] == [(120, 60), (120, 120), (0, 0)]


def test_credits_burned_at_the_platforms_rates_and_at_new_ones(cli_env, tmp_path):  # noqa: F811
    """The export's rate card charges the as-configured replay; ``--rates`` the changed one.
    A preempted attempt is refunded whole (the platform restarts it from scratch), so
    what a tenant burns is its jobs' GPU-hours at the rate; only the prices changed, so
    the schedule is the same and the bill scales with them."""
    history = seeded_history(tmp_path / "history")
    (history / "rates.csv").write_text("resource,per_hour,borrowed_per_hour,from_s\nH800,2,,-60\n")
    dearer = tmp_path / "dearer.csv"
    dearer.write_text("resource,per_hour\nH800,3\n")
    args = ["whatif", "--history", str(history), "--out", str(tmp_path / "out")]
    report = json.loads(mosu(*args, "--rates", str(dearer), "-o", "json", env=cli_env).stdout)
    assert report["changes"] == [f"rates from {dearer}"]
    assert report["rates"] == {"before": "platform", "after": str(dearer)}
    jobs = native.load_jobs(history / "jobs.csv")
    for tenant in ("acme", "beta"):
        gpu_h = sum(j.shape.gpus * (j.duration_s or 0) for j in jobs if j.tenant == tenant) / HOUR
        before = report["before"]["tenants"][tenant]["credits_burned"]
        after = report["after"]["tenants"][tenant]["credits_burned"]
        assert before == pytest.approx(2 * gpu_h, abs=1e-3)
        assert after == pytest.approx(3 * gpu_h, abs=1e-3)
    assert report["before"]["overall"]["avg_wait_s"] == report["after"]["overall"]["avg_wait_s"]

    assert "┃ credits" in mosu(*args, "--rates", str(dearer), env=cli_env).stdout

    (history / "rates.csv").unlink()
    plain = json.loads(mosu(*args, "--set-weight", "acme=2", "-o", "json", env=cli_env).stdout)
    assert "credits_burned" not in plain["before"]["overall"]
    assert plain["rates"] == {"before": None, "after": None}
    assert "┃ credits" not in mosu(*args, "--set-weight", "acme=2", env=cli_env).stdout

    dearer.write_text("resource,per_hour\nH800,abc\n")
    one_line_error(
        mosu(*args, "--rates", str(dearer), env=cli_env, ok=False), "per_hour 'abc' is not a number"
    )
