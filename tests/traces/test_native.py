"""Native workload CSVs: parsing, round trips, cluster building and error messages."""

from __future__ import annotations

import re

import pytest

from mosu.core.errors import InvalidInput, TraceFormatError
from mosu.core.models import JobKind, NodeState, Quota, Shape, Tenant
from mosu.traces import native
from mosu.traces.schema import ChangeKind, TimedChange, TraceJob

JOBS_HEADER = "job_id,tenant,submit_s,duration_s,replicas,gpus,gpu_type,priority,kind,estimate_s\n"
TENANTS_HEADER = "tenant,gpu_type,guaranteed,limit,weight\n"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_jobs_reads_every_field_and_sorts_by_submit(tmp_path):
    path = write(
        tmp_path,
        "jobs.csv",
        JOBS_HEADER
        + "big,acme,100,3600,4,8,A100|H100,1,train,4000\n"
        + "nb,beta,5.5,60,1,0.25,,0,dev,\n"
        + "cpu,beta,5.5,10,2,0,A100,-1,batch,\n",
    )
    jobs = native.load_jobs(path)
    assert [j.id for j in jobs] == ["nb", "cpu", "big"]
    nb, cpu, big = jobs
    assert big == TraceJob(
        id="big",
        tenant="acme",
        submit_s=100.0,
        duration_s=3600.0,
        shape=Shape(gpus=8),
        replicas=4,
        gpu_types=("A100", "H100"),
        priority=1,
        kind=JobKind.TRAIN,
        estimate_s=4000.0,
    )
    assert nb.shape == Shape(gpus=1, gpu_milli=250)
    assert nb.gpu_types == ()
    assert nb.estimate_s is None
    assert nb.kind is JobKind.DEV
    assert cpu.shape == Shape(gpus=0)
    assert cpu.priority == -1


def test_estimate_column_is_optional(tmp_path):
    path = write(
        tmp_path,
        "jobs.csv",
        "job_id,tenant,submit_s,duration_s,replicas,gpus,gpu_type,priority,kind\n"
        "a,t,0,10,1,1,A100,0,eval\n",
    )
    (job,) = native.load_jobs(path)
    assert job.estimate_s is None
    assert job.kind is JobKind.EVAL


def test_jobs_round_trip(tmp_path):
    jobs = [
        TraceJob("a", "t1", 0.0, 12.5, Shape(gpus=1, gpu_milli=500), kind=JobKind.INFERENCE),
        TraceJob(
            "b",
            "t2",
            1.0 / 3.0,
            1e6,
            Shape(gpus=8),
            replicas=16,
            gpu_types=("H100",),
            priority=3,
            estimate_s=2e6,
        ),
    ]
    path = tmp_path / "jobs.csv"
    native.write_jobs(path, jobs)
    assert native.load_jobs(path) == jobs


def test_checkpoint_column_is_written_only_when_a_job_declares_one(tmp_path):
    plain = [TraceJob("a", "t", 0.0, 10.0, Shape(gpus=1))]
    native.write_jobs(tmp_path / "plain.csv", plain)
    assert (tmp_path / "plain.csv").read_text().splitlines()[0] == JOBS_HEADER.strip()
    declared = [*plain, TraceJob("b", "t", 1.0, 9.0, Shape(gpus=8), checkpoint_every_s=1800.0)]
    native.write_jobs(tmp_path / "declared.csv", declared)
    text = (tmp_path / "declared.csv").read_text().splitlines()
    assert text[0] == JOBS_HEADER.strip() + ",checkpoint_every_s"
    assert native.load_jobs(tmp_path / "declared.csv") == declared


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("0", "column 'checkpoint_every_s': must be > 0 (or empty for none), got 0"),
        ("-1", "column 'checkpoint_every_s': must be a finite number >= 0"),
        ("soon", "column 'checkpoint_every_s': bad number 'soon'"),
    ],
)
def test_bad_checkpoint_intervals_name_the_column(tmp_path, value, want):
    header = JOBS_HEADER.strip() + ",checkpoint_every_s\n"
    path = write(tmp_path, "jobs.csv", header + f"a,t,0,10,1,1,A100,0,train,,{value}\n")
    with pytest.raises(TraceFormatError) as info:
        native.load_jobs(path)
    assert str(info.value).startswith(f"{path}:2")
    assert want in str(info.value)


def test_load_tenants(tmp_path):
    path = write(
        tmp_path,
        "tenants.csv",
        TENANTS_HEADER + "acme,A100,16,32,2\nacme,H100,8,,2\nbeta,*,0.5,4,1\n",
    )
    acme, beta = native.load_tenants(path)
    assert acme == Tenant(
        name="acme",
        quotas=(("A100", Quota(16_000, 32_000)), ("H100", Quota(8_000, None))),
        weight=2.0,
    )
    assert beta.quota("T4") == Quota(500, 4_000)


def test_the_cohort_column_is_optional_and_empty_means_the_default_cohort(tmp_path):
    path = write(
        tmp_path,
        "tenants.csv",
        "tenant,gpu_type,guaranteed,limit,weight,cohort\n"
        "acme,A100,16,32,2,lab-a\nacme,H100,8,,2,lab-a\nbeta,*,0.5,4,1,\ngamma,*,1,,1, lab-a \n",
    )
    acme, beta, gamma = native.load_tenants(path)
    assert acme == Tenant(
        name="acme",
        quotas=(("A100", Quota(16_000, 32_000)), ("H100", Quota(8_000, None))),
        weight=2.0,
        cohort="lab-a",
    )
    assert beta.cohort is None
    assert gamma.cohort == "lab-a"
    # Without the column every tenant is in the default cohort.
    old = write(tmp_path, "old.csv", TENANTS_HEADER + "acme,A100,16,32,2\n")
    assert [t.cohort for t in native.load_tenants(old)] == [None]


def test_tenants_round_trip(tmp_path):
    tenants = [
        Tenant("a", (("A100", Quota(16_000, None)), ("*", Quota(1_500, 3_000))), weight=1.5),
        Tenant("b", (("H100", Quota(0, 8_000)),)),
        Tenant("c", (("H100", Quota(4_000, 8_000)), ("A100", Quota(2_000))), cohort="lab-a"),
        Tenant("d", (), cohort="lab,b"),
    ]
    path = tmp_path / "tenants.csv"
    native.write_tenants(path, tenants)
    assert path.read_text().splitlines()[0] == "tenant,gpu_type,guaranteed,limit,weight,cohort"
    loaded = native.load_tenants(path)
    assert loaded[:3] == tenants[:3]
    assert loaded[3] == Tenant("d", (("*", Quota()),), cohort="lab,b")


@pytest.mark.parametrize(
    ("row", "want"),
    [
        pytest.param("a,t,0,10,1,one,A100,0,train,", "column 'gpus': bad number 'one'", id="gpus"),
        pytest.param(
            "a,t,0,10,2,0.5,A100,0,train,",
            "column 'gpus': a fractional GPU is only valid for a single replica",
            id="a fraction in a gang",
        ),
        pytest.param(
            "a,t,0,10,1,1.5,A100,0,train,",
            "column 'gpus': a fraction is only valid below one GPU",
            id="a fraction above one GPU",
        ),
        pytest.param(
            "a,t,0,10,0,1,A100,0,train,", "column 'replicas': must be >= 1", id="zero replicas"
        ),
        pytest.param(
            "a,t,-5,10,1,1,A100,0,train,",
            "column 'submit_s': must be a finite number >= 0",
            id="negative submit",
        ),
        pytest.param(
            "a,t,0,nan,1,1,A100,0,train,",
            "column 'duration_s': must be a finite number",
            id="nan duration",
        ),
        pytest.param(
            "a,t,0,10,1,1,A100,0,pretrain,",
            "column 'kind': unknown kind 'pretrain'",
            id="unknown kind",
        ),
        pytest.param(
            "a,t,0,10,1,1,A100,high,train,",
            "column 'priority': bad integer 'high'",
            id="priority",
        ),
        pytest.param(",t,0,10,1,1,A100,0,train,", "column 'job_id': missing value", id="no id"),
        pytest.param("a,t,0,10", "column 'replicas': missing value", id="a short line"),
        pytest.param("a,t,0,10,1,1,A100,0,train,,x", "more values than header", id="a long line"),
    ],
)
def test_malformed_job_lines_name_line_and_column(tmp_path, row, want):
    path = write(tmp_path, "jobs.csv", JOBS_HEADER + "ok,t,0,10,1,1,A100,0,train,\n" + row + "\n")
    with pytest.raises(TraceFormatError) as info:
        native.load_jobs(path)
    assert str(info.value).startswith(f"{path}:3")
    assert want in str(info.value)


def test_duplicate_job_ids_are_rejected(tmp_path):
    path = write(tmp_path, "jobs.csv", JOBS_HEADER + "a,t,0,1,1,1,,0,dev,\na,t,0,1,1,1,,0,dev,\n")
    with pytest.raises(TraceFormatError, match=r":3 column 'job_id': duplicate id 'a'.*line 2"):
        native.load_jobs(path)


def test_missing_job_column_is_named(tmp_path):
    path = write(tmp_path, "jobs.csv", "job_id,tenant,submit_s\n")
    with pytest.raises(TraceFormatError, match=r"jobs\.csv:1 column 'duration_s': missing column"):
        native.load_jobs(path)


@pytest.mark.parametrize(
    ("rows", "want"),
    [
        pytest.param("a,A100,8,4,1\n", ":2 column 'limit': must be >= guaranteed", id="limit"),
        pytest.param("a,A100,8,,0\n", ":2 column 'weight': must be > 0", id="zero weight"),
        pytest.param("a,,8,,1\n", ":2 column 'gpu_type': missing value", id="no GPU type"),
        pytest.param(
            "a,A100,8,,1\na,A100,4,,1\n",
            ":3 column 'gpu_type': duplicate GPU type 'A100'",
            id="a GPU type twice",
        ),
        pytest.param(
            "a,A100,8,,1\na,H100,4,,2\n",
            ":3 column 'weight': 2 differs from 1 on line 2",
            id="two weights for one tenant",
        ),
        pytest.param(
            "a,A100,8,,1,x\n", ":2: more values than header columns", id="a cohort without header"
        ),
    ],
)
def test_malformed_tenant_files(tmp_path, rows, want):
    path = write(tmp_path, "tenants.csv", TENANTS_HEADER + rows)
    with pytest.raises(TraceFormatError) as info:
        native.load_tenants(path)
    assert want in str(info.value)


@pytest.mark.parametrize(
    ("rows", "want"),
    [
        pytest.param(
            "a,A100,8,,1,lab-a\nb,A100,1,,1,\na,H100,4,,1,lab-b\n",
            ":4 column 'cohort': 'lab-b' differs from 'lab-a' on line 2",
            id="two cohorts",
        ),
        pytest.param(
            "a,A100,8,,1,lab-a\na,H100,4,,1,\n",
            ":3 column 'cohort': the default cohort (empty) differs from 'lab-a' on line 2",
            id="a cohort and none",
        ),
        pytest.param(
            "a,A100,8,,1,\na,H100,4,,1,lab-a\n",
            ":3 column 'cohort': 'lab-a' differs from the default cohort (empty) on line 2",
            id="none and a cohort",
        ),
    ],
)
def test_one_tenant_has_one_cohort(tmp_path, rows, want):
    path = write(tmp_path, "tenants.csv", "tenant,gpu_type,guaranteed,limit,weight,cohort\n" + rows)
    with pytest.raises(TraceFormatError) as info:
        native.load_tenants(path)
    assert want in str(info.value)


def test_default_cluster_rounds_guarantees_up_to_whole_nodes():
    tenants = [
        Tenant("a", (("A100", Quota(12_000)), ("H100", Quota(8_000)))),
        Tenant("b", (("A100", Quota(4_500)),)),
    ]
    nodes = native.default_cluster(tenants)
    a100 = [n for n in nodes if n.gpu_type == "A100"]
    h100 = [n for n in nodes if n.gpu_type == "H100"]
    assert len(a100) == 3  # 16.5 GPUs -> 3 nodes of 8
    assert len(h100) == 1
    assert a100[0].name == "a100-n000"
    assert all(n.gpus == 8 for n in nodes)


def test_default_cluster_needs_named_gpu_types():
    with pytest.raises(InvalidInput, match="any GPU type"):
        native.default_cluster([Tenant("a", (("*", Quota(8_000)),))])


def test_parse_cluster_spec():
    nodes = native.parse_cluster_spec("128x8:A100, 2x4:H100")
    assert len(nodes) == 130
    assert sum(n.gpus for n in nodes if n.gpu_type == "A100") == 1024
    assert nodes[0].name == "a100-n000"
    assert nodes[127].name == "a100-n127"
    assert nodes[16].rack == "a100-r01"
    assert nodes[-1].name == "h100-n001"
    assert len({n.name for n in native.parse_cluster_spec("1x8:A100,1x8:A100")}) == 2


@pytest.mark.parametrize("spec", ["128:A100", "x8:A100", "0x8:A100", "4x8", "4x8:", "ax8:A100"])
def test_bad_cluster_specs_are_rejected(spec):
    with pytest.raises(InvalidInput, match="expected COUNTxGPUS:TYPE"):
        native.parse_cluster_spec(spec)


def test_timed_changes_round_trip_and_bad_lines_name_the_column(tmp_path):
    changes = [
        TimedChange(5.0, ChangeKind.QUOTA, "acme", gpu_type="H800", quota=Quota(16_000, 32_000)),
        TimedChange(5.0, ChangeKind.QUOTA, "acme", gpu_type="*", quota=Quota(500, None)),
        TimedChange(7.5, ChangeKind.WEIGHT, "acme", weight=2.5),
        TimedChange(8.0, ChangeKind.COHORT, "acme", cohort="lab-a"),
        TimedChange(9.0, ChangeKind.COHORT, "acme", cohort=None),
        TimedChange(10.0, ChangeKind.NODE, "n1", node_state=NodeState.DOWN),
    ]
    path = tmp_path / "changes.csv"
    native.write_changes(path, changes)
    assert path.read_text().splitlines()[:3] == [
        "time_s,kind,subject,value",
        "5.0,quota,acme,H800:16:32",
        "5.0,quota,acme,*:0.5",
    ]
    assert native.load_changes(path) == changes
    for line, column, reason in [
        ("1,quota,acme,H800", "value", "expected TYPE:GUARANTEED[:LIMIT]"),
        ("1,quota,acme,H800:8:4", "value", "the limit must be >= the guarantee"),
        ("1,weight,acme,0", "value", "a weight must be > 0"),
        ("1,node,n1,gone", "value", "unknown value 'gone'"),
        ("1,moved,n1,ready", "kind", "unknown value 'moved'"),
        ("-1,node,n1,ready", "time_s", "must be a finite number >= 0"),
        ("1,node,,ready", "subject", "missing value"),
    ]:
        path.write_text(f"time_s,kind,subject,value\n{line}\n")
        with pytest.raises(TraceFormatError, match=re.escape(reason)) as caught:
            native.load_changes(path)
        assert caught.value.column == column, line
