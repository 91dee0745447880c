"""Philly loader: real files from ../shared/traces plus tiny malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosu.core.errors import TraceFormatError
from mosu.core.models import GPU_MILLI, Shape
from mosu.traces import philly

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "philly"
needs_trace = pytest.mark.skipif(
    not (TRACES / "philly.csv").exists(),
    reason=f"public Philly trace not found at {TRACES} (../shared/traces beside the repo)",
)


@pytest.fixture(scope="module")
def all_jobs():
    return philly.load_jobs(TRACES / "philly.csv")


@pytest.fixture(scope="module")
def vcs():
    return philly.load_vcs(TRACES / "philly_vc.csv")


@pytest.mark.parametrize(
    ("num_gpus", "want_replicas", "want_per_replica"),
    [
        pytest.param(1, 1, 1, id="one GPU is one replica"),
        pytest.param(8, 1, 8, id="a full node is one replica"),
        pytest.param(16, 2, 8, id="16 GPUs are two full nodes"),
        pytest.param(12, 2, 6, id="12 GPUs are two replicas of 6"),
        pytest.param(24, 3, 8, id="24 GPUs are three full nodes"),
        pytest.param(128, 16, 8, id="128 GPUs are sixteen full nodes"),
        pytest.param(9, 3, 3, id="9 GPUs take the smallest divisor above ceil(n/8)"),
    ],
)
def test_gang_shape(num_gpus, want_replicas, want_per_replica):
    assert philly.gang_shape(num_gpus) == (want_replicas, want_per_replica)


@needs_trace
def test_load_jobs_sorts_by_time_and_keeps_row_ids(all_jobs):
    assert len(all_jobs) == 82_247
    submits = [j.submit_s for j in all_jobs]
    assert submits == sorted(submits)
    # Row 0 of the file is 2017-10-09 07:01:55, 66 s, 1 GPU, VC 11cb48.
    first_row = next(j for j in all_jobs if j.id == "philly-0")
    assert first_row.submit_s == philly.parse_timestamp("2017-10-09 07:01:55")
    assert first_row.duration_s == 66.0
    assert first_row.tenant == "11cb48"
    assert first_row.shape == Shape(gpus=1)
    assert first_row.gpu_types == ("P100",)
    assert len({j.id for j in all_jobs}) == len(all_jobs)


@needs_trace
def test_large_jobs_become_gangs_of_full_nodes(all_jobs):
    sizes = {(j.replicas, j.shape.gpus) for j in all_jobs if j.replicas > 1}
    assert sizes == {(2, 6), (2, 8), (3, 8), (4, 8), (8, 8), (16, 8)}
    assert sum(j.replicas > 1 for j in all_jobs) == 289


@needs_trace
def test_load_vcs(vcs):
    assert len(vcs) == 11
    assert vcs["6214e9"] == 64
    assert sum(vcs.values()) == 352


@needs_trace
def test_build_cluster_quarter_scale_gives_88_nodes(vcs):
    tenants, nodes = philly.build_cluster(vcs, scale=0.25)
    assert len(nodes) == 88
    assert sum(n.gpus for n in nodes) == 704
    by_name = {t.name: t for t in tenants}
    assert by_name["ed69ec"].quota("P100").guaranteed_milli == 2 * 8 * GPU_MILLI
    assert by_name["6214e9"].quota("P100").limit_milli is None
    assert {n.rack for n in nodes} == set(vcs)
    assert nodes[0].name == "6214e9-n00"
    assert all(n.cpu_milli == 96_000 for n in nodes)


def test_build_cluster_rounds_node_counts_up():
    tenants, nodes = philly.build_cluster({"a": 3, "b": 1}, scale=0.5)
    assert [n.name for n in nodes] == ["a-n00", "a-n01", "b-n00"]
    assert [t.quota("P100").guaranteed_milli for t in tenants] == [16_000, 8_000]
    assert [t.weight for t in tenants] == [1.0, 1.0]


@needs_trace
def test_select_first_two_weeks_of_october(all_jobs, vcs):
    kept, dropped = philly.select(all_jobs, vcs=vcs, start="2017-10-01", end="2017-10-15")
    assert len(kept) == 24_134
    mean = sum(j.duration_s for j in kept) / len(kept)
    assert mean == pytest.approx(8_903.35, abs=0.01)
    assert set(dropped) <= {"23dbec", "51b7ef", "925e2b", "795a4c"}
    assert all(philly.parse_timestamp("2017-10-15") > j.submit_s for j in kept)


def test_select_window_is_half_open_and_counts_dropped_vcs(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-02 00:00:00,5,1,5,x\n"
        "2017-10-01 00:00:00,5,1,5,a\n"
        "2017-10-01 00:00:00,5,1,5,x\n"
        "2017-09-30 23:59:59,5,1,5,a\n"
    )
    jobs = philly.load_jobs(path)
    assert [j.id for j in jobs] == ["philly-3", "philly-1", "philly-2", "philly-0"]
    kept, dropped = philly.select(jobs, vcs={"a": 1}, start="2017-10-01", end="2017-10-02")
    assert [j.id for j in kept] == ["philly-1"]
    assert dropped == {"x": 1}


@pytest.mark.parametrize(
    ("content", "want"),
    [
        pytest.param(
            "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-02 00:00:00,abc,1,5,x\n",
            ":2 column 'duration': bad value 'abc'",
            id="a non-numeric duration names line and column",
        ),
        pytest.param(
            "timestamp,duration,num_gpus,gpu_time,cluster\nyesterday,5,1,5,x\n",
            ":2 column 'timestamp': bad value 'yesterday'",
            id="a bad timestamp names line and column",
        ),
        pytest.param(
            "timestamp,duration,num_gpus,gpu_time,cluster\n"
            "2017-10-02 00:00:00,5,1,5,x\n2017-10-02 00:00:00,5,0,5,x\n",
            ":3 column 'num_gpus': bad value '0': must be >= 1",
            id="zero GPUs is rejected on its line",
        ),
        pytest.param(
            "timestamp,duration,gpus,cluster\n",
            ":1 column 'num_gpus': missing column",
            id="a missing column is named",
        ),
        pytest.param("", ":1: empty file", id="an empty file is rejected"),
    ],
)
def test_malformed_job_files(tmp_path, content, want):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TraceFormatError) as info:
        philly.load_jobs(path)
    assert str(info.value).startswith(str(path))
    assert want in str(info.value)


def test_malformed_vc_file(tmp_path):
    path = tmp_path / "vc.csv"
    path.write_text("vc,node num\na,4\nb,four\n")
    with pytest.raises(TraceFormatError, match=r"vc\.csv:3 column 'node num': bad value 'four'"):
        philly.load_vcs(path)
