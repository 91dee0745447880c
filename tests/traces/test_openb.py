from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mosu.core.errors import TraceFormatError
from mosu.core.models import GPU_MILLI, Node, Quota
from mosu.traces.openb import cluster_tenant, load_nodes, load_pod_runs, load_pods, sample_nodes

OPENB = Path(__file__).resolve().parents[2] / ".." / "shared" / "traces" / "alibaba-gpu-v2023-openb"
needs_openb = pytest.mark.skipif(
    not OPENB.is_dir(), reason=f"openb traces not found at {OPENB} (../shared/traces)"
)


@needs_openb
def test_gpu_node_list_loads_every_node_and_gpu() -> None:
    nodes = load_nodes(OPENB / "openb_node_list_gpu_node.csv")
    assert len(nodes) == 1213
    assert sum(n.gpus for n in nodes) == 6212
    by_type = Counter()
    for n in nodes:
        by_type[n.gpu_type] += n.gpus
    assert by_type["G2"] == 4392 and by_type["T4"] == 842 and by_type["A10"] == 2
    assert nodes[0].name == "openb-node-0000" and nodes[0].cpu_milli == 64000


@needs_openb
def test_default_pod_list_has_the_published_mix() -> None:
    pods = load_pods(OPENB / "openb_pod_list_default.csv")
    assert len(pods) == 8152
    gpus = Counter(p.shape.gpus for p in pods)
    assert (gpus[0], gpus[1], gpus[2], gpus[4], gpus[8]) == (1088, 6989, 16, 15, 44)
    assert sum(1 for p in pods if p.shape.gpus == 1 and p.shape.gpu_milli < GPU_MILLI) == 3078
    assert sum(p.shape.total_gpu_milli for p in pods) == 6_086_800
    assert all(p.replicas == 1 and not p.gpu_types for p in pods)


@needs_openb
def test_gpu_spec_is_split_into_accepted_types() -> None:
    pods = load_pods(OPENB / "openb_pod_list_gpuspec33.csv")
    specs = Counter(p.gpu_types for p in pods if p.gpu_types)
    assert specs[("T4",)] == 1291
    assert specs[("V100M16", "V100M32")] == 141
    assert sum(specs.values()) == 2388


@needs_openb
def test_five_column_pod_list_loads() -> None:
    pods = load_pods(OPENB / "openb_pod_list_multigpu50.csv")
    assert len(pods) == 9061
    assert Counter(p.shape.gpus for p in pods)[8] == 556
    assert all(p.submit_s == 0.0 and p.duration_s is None for p in pods)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "list.csv"
    path.write_text(text)
    return path


POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model\n"


@pytest.mark.parametrize(
    ("name", "header", "body", "loader", "want"),
    [
        (
            "a bad number names its line and column",
            POD_HEADER,
            "p0,1000,10,1,1000\np1,x,10,1,500\n",
            load_pods,
            r"list.csv:3 column 'cpu_milli': bad value 'x'",
        ),
        (
            "a missing column names the header",
            "name,cpu_milli,memory_mib,num_gpu\n",
            "",
            load_pods,
            r"list.csv:1 column 'gpu_milli': missing column",
        ),
        (
            "a share above one GPU is refused",
            POD_HEADER,
            "p0,1000,10,1,1500\n",
            load_pods,
            r"list.csv:2 column 'gpu_milli': must be in 1..1000",
        ),
        (
            "a multi-GPU share is refused",
            POD_HEADER,
            "p0,1000,10,2,500\n",
            load_pods,
            r"list.csv:2 column 'gpu_milli': a multi-GPU pod must take whole GPUs",
        ),
        (
            "a short row is refused",
            POD_HEADER,
            "p0,1000,10\n",
            load_pods,
            r"list.csv:2: expected 5 fields",
        ),
        (
            "a negative GPU count is refused",
            NODE_HEADER,
            "n0,1000,10,-1,T4\n",
            load_nodes,
            r"list.csv:2 column 'gpu': bad value '-1'",
        ),
        (
            "a GPU node without a model is refused",
            NODE_HEADER,
            "n0,1000,10,2,\n",
            load_nodes,
            r"list.csv:2 column 'model': a GPU node needs a GPU model",
        ),
        (
            "a duplicate node name is refused",
            NODE_HEADER,
            "n0,1,1,1,T4\nn0,1,1,1,T4\n",
            load_nodes,
            r"list.csv:3 column 'sn': duplicate node name 'n0'",
        ),
        ("an empty file is refused", "", "", load_nodes, r"list.csv:1: empty file"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_malformed_lists_give_one_line_errors(tmp_path, name, header, body, loader, want) -> None:
    path = write(tmp_path, header + body)
    with pytest.raises(TraceFormatError, match=want) as info:
        loader(path)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_a_trace_format_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match=r"nope.csv: cannot open"):
        load_pods(tmp_path / "nope.csv")


def test_small_lists_load_with_cpu_only_pods_and_gpu_spec(tmp_path: Path) -> None:
    nodes = load_nodes(write(tmp_path, NODE_HEADER + "n0,32000,1000,4,T4\n"))
    assert (nodes[0].gpus, nodes[0].gpu_type, nodes[0].mem_mib) == (4, "T4", 1000)
    pods = load_pods(
        write(
            tmp_path,
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,creation_time,deletion_time\n"
            "p0,4000,100,0,0,,10,70\np1,8000,200,1,250,G2|T4,,\n",
        )
    )
    assert (pods[0].shape.gpus, pods[0].shape.total_gpu_milli, pods[0].duration_s) == (0, 0, 60.0)
    assert (pods[1].shape.gpu_milli, pods[1].gpu_types, pods[1].submit_s) == (
        250,
        ("G2", "T4"),
        0.0,
    )


TIMED_PODS = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
    "p0,1000,1024,1,1000,,LS,Running,100,900,160\n"
    "p1,1000,1024,1,500,T4|P100,LS,Pending,200,700,\n"
    "p2,1000,1024,0,0,,BE,Succeeded,300,300,300\n"
)


def test_pods_over_time_run_from_scheduling_to_deletion(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(TIMED_PODS)
    jobs, never = load_pod_runs(path)
    assert never == 1  # p1: never scheduled, no run time
    assert [(j.id, j.submit_s, j.duration_s) for j in jobs] == [
        ("p0", 100.0, 740.0),
        ("p2", 300.0, 0.0),
    ]


def test_a_pod_deleted_before_it_is_scheduled_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(TIMED_PODS.replace("100,900,160", "100,150,160"))
    with pytest.raises(TraceFormatError, match="deletion_time"):
        load_pod_runs(path)


def test_cluster_scale_samples_each_model_in_file_order() -> None:
    nodes = [Node(f"a{i}", "A", 8, 1, 1) for i in range(10)] + [Node("b0", "B", 2, 1, 1)]
    half = sample_nodes(nodes, 0.5)
    assert sum(n.gpu_type == "A" for n in half) == 5
    assert [n.name for n in half if n.gpu_type == "B"] == ["b0"]  # rounded up: never none
    assert [n.name for n in half] == sorted(
        (n.name for n in half), key=[n.name for n in nodes].index
    )
    assert sample_nodes(nodes, 0.5) == half  # seeded
    assert len(sample_nodes(nodes, 2.0)) == 22
    assert cluster_tenant(half).quotas == (
        ("A", Quota(40 * GPU_MILLI, None)),
        ("B", Quota(2 * GPU_MILLI, None)),
    )
