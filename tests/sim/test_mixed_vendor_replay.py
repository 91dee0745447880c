"""A mixed cluster through ``mosu sim replay``: 8 H800 and 8 Ascend910B, jobs of both
types, every policy: an Ascend910B job starts only on an Ascend910B node, even while the
H800s stand idle, and the other way round."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from mosu.cli.main import main

POLICIES = ("mosu", "fifo", "drf", "las")


def write_inputs(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """60 jobs, two in three for the NPUs (which they oversubscribe), sizes 1 to 8."""
    rng = random.Random(19)
    rows, types = [], {}
    for i in range(60):
        gpu_type = "H800" if i % 3 == 0 else "Ascend910B"
        gpus = rng.choice((1, 2, 4, 8))
        tenant = rng.choice("ab")
        rows.append(f"j{i},{tenant},{i * 5},{rng.randint(60, 900)},1,{gpus},{gpu_type},0,train")
        types[f"j{i}"] = gpu_type
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "job_id,tenant,submit_s,duration_s,replicas,gpus,gpu_type,priority,kind\n"
        + "\n".join(rows)
        + "\n"
    )
    tenants = tmp_path / "tenants.csv"
    tenants.write_text(
        "tenant,gpu_type,guaranteed,limit,weight\n"
        "a,H800,4,,1\na,Ascend910B,4,,1\nb,H800,4,,1\nb,Ascend910B,4,,1\n"
    )
    return jobs, tenants, types


@pytest.mark.parametrize("cluster", ["1x8:H800,1x8:Ascend910B", None])
def test_an_ascend_job_never_starts_on_an_h800_node(tmp_path: Path, cluster: str | None):
    jobs, tenants, types = write_inputs(tmp_path)
    out = tmp_path / "out"
    args = ["sim", "replay", "--trace", f"mosu:{jobs}", "--tenants", str(tenants)]
    args += ["--cluster", cluster] if cluster else []  # None: one node per type from quotas
    for policy in POLICIES:
        args += ["--policy", policy]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(out)])
    assert exit_info.value.code == 0
    for policy in POLICIES:
        starts = [
            line.split()
            for line in (out / f"decisions-{policy}.log").read_text().splitlines()
            if line.split()[1] == "start"
        ]
        started = {job for _, _, job, _ in starts}
        if policy == "mosu":  # the others keep jobs above a guarantee out (no borrowing)
            assert started == set(types)
        assert {types[job] for job in started} == {"H800", "Ascend910B"}, policy
        for _, _, job, where in starts:
            nodes = {re.sub(r"-n\d+$", "", p.split(":")[0]) for p in where.split(",")}
            assert nodes == {types[job].lower()}, f"{policy}: {job} ({types[job]}) on {where}"
