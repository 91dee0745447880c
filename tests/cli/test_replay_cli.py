"""``mosu sim replay`` end to end on small inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosu.cli.main import main

REPO = Path(__file__).resolve().parents[2]
PHILLY = REPO.parent / "shared" / "traces" / "philly"

JOBS = """job_id,tenant,submit_s,duration_s,replicas,gpus,gpu_type,priority,kind
j1,a,0,600,1,8,A100,0,train
j2,a,10,300,1,8,A100,0,train
j3,b,20,100,1,4,A100,0,train
j4,b,30,50,1,1,A100,0,eval
"""
TENANTS = """tenant,gpu_type,guaranteed,limit,weight
a,A100,8,,1
b,A100,8,,1
"""


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    jobs, tenants = tmp_path / "jobs.csv", tmp_path / "tenants.csv"
    jobs.write_text(JOBS)
    tenants.write_text(TENANTS)
    return jobs, tenants


def test_replay_writes_one_summary_per_policy(tmp_path: Path) -> None:
    jobs, tenants = write_inputs(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sim", "replay", "--trace", f"mosu:{jobs}", "--tenants", str(tenants),
                "--policy", "fifo", "--policy", "mosu", "--out", str(out),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 0
    report = json.loads((out / "replay.json").read_text())
    assert list(report["policies"]) == ["fifo", "mosu"]
    fifo, mosu = report["policies"]["fifo"], report["policies"]["mosu"]
    assert fifo["jobs"] == mosu["jobs"] == 4
    # Static partitions make j2 wait for j1; borrowing runs it at once on b's idle share.
    assert fifo["avg_queue_s"] > mosu["avg_queue_s"]
    assert (out / "jct_cdf.png").stat().st_size > 0
    assert (out / "decisions-mosu.log").read_text().startswith("0.000 start j1")


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["--policy", "nope"], "unknown policy 'nope'"),
        (["--window", "x:y"], "bad window"),
        (["--checkpoint-every", "-1"], "must be >= 0"),
    ],
    ids=["an unknown policy", "a bad window", "a negative checkpoint interval"],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], want: str
) -> None:
    jobs, tenants = write_inputs(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "replay", "--trace", f"mosu:{jobs}", "--tenants", str(tenants), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert want in err
    assert len(err.splitlines()) == 1


@pytest.mark.skipif(not PHILLY.exists(), reason="the shared Philly trace is not present")
def test_philly_window_replays_on_a_scaled_cluster(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sim", "replay", "--trace", f"philly:{PHILLY / 'philly.csv'}",
                "--tenants", str(PHILLY / "philly_vc.csv"), "--cluster-scale", "0.25",
                "--window", "2017-10-01:2017-10-01 06:00:00", "--policy", "mosu",
                "--out", str(out),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 0
    summary = json.loads((out / "replay.json").read_text())["policies"]["mosu"]
    assert summary["jobs"] > 0
    assert summary["unfinished"] == 0


OPENB_NODES = """sn,cpu_milli,memory_mib,gpu,model
node-0,96000,262144,8,G2
node-1,96000,262144,8,G2
node-2,32000,131072,2,T4
"""
OPENB_PODS = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
    """pod-0,8000,16384,8,1000,,LS,Running,0,1000,0
pod-1,4000,8192,1,500,,LS,Running,10,500,10
pod-2,4000,8192,1,1000,T4,LS,Succeeded,20,320,25
pod-3,4000,8192,2,1000,,LS,Pending,30,900,
pod-4,16000,8192,8,1000,,BE,Running,40,640,40
"""
)


def test_openb_pods_over_time_one_column_per_policy_and_placement(tmp_path: Path) -> None:
    nodes, pods = tmp_path / "nodes.csv", tmp_path / "pods.csv"
    nodes.write_text(OPENB_NODES)
    pods.write_text(OPENB_PODS)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sim", "replay", "--trace", f"openb:{pods}", "--nodes", str(nodes),
                "--policy", "mosu", "--policy", "fifo",
                "--placement", "bestfit", "--placement", "mosu", "--out", str(out),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 0
    policies = json.loads((out / "replay.json").read_text())["policies"]
    assert list(policies) == ["mosu+bestfit", "mosu+mosu", "fifo+bestfit", "fifo+mosu"]
    for summary in policies.values():
        # pod-3 was never scheduled in the trace: no run time, left out.
        assert summary["jobs"] == 4
        assert summary["unstarted"] == 0
    assert (out / "decisions-mosu+mosu.log").exists()


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["--placement", "nope"], "unknown placement 'nope'"),
        (["--nodes", "x.csv"], "x.csv"),
    ],
    ids=["an unknown placement", "a node list that is not there"],
)
def test_bad_placement_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], want: str
) -> None:
    jobs, tenants = write_inputs(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "replay", "--trace", f"mosu:{jobs}", "--tenants", str(tenants), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert want in err and len(err.splitlines()) == 1
