"""Discovery on real tool output (fixtures/discovery, sources in its README), then through
fake tools on PATH so the subprocess path runs for real."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosu.agent import gpus
from mosu.agent.discovery import (
    DeviceSet,
    amd,
    ascend,
    cambricon,
    declared_devices,
    discover,
    nvidia,
    run_tool,
)
from mosu.core.accelerators import Vendor
from mosu.core.errors import InvalidInput

FIXTURES = Path(__file__).parent / "fixtures" / "discovery"

PARSERS = {
    "nvidia-smi": nvidia.parse,
    "npu-smi": ascend.parse,
    "amd-smi": amd.parse_amd_smi,
    "rocm-smi": amd.parse_rocm_smi,
    "cnmon": cambricon.parse,
}


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@dataclass(frozen=True)
class Want:
    model: str
    indices: tuple[int, ...]
    memory_mib: int


CASES = [
    # npu-smi: 910A (memory and HBM pairs; NPU 3 in a container is device 0)
    (
        "npu-smi/23.0.rc2-910A-one-in-container.txt",
        Vendor.HUAWEI,
        [Want("Ascend910A", (0,), 32768)],
    ),
    # npu-smi 23.x and 24.x on 910B3, with and without a process table
    (
        "npu-smi/23.0.7-910B3x8-processes.txt",
        Vendor.HUAWEI,
        [Want("Ascend910B3", tuple(range(8)), 65536)],
    ),
    ("npu-smi/24.1.rc1-910B3x8.txt", Vendor.HUAWEI, [Want("Ascend910B3", tuple(range(8)), 65536)]),
    # Atlas A3: two chips per NPU, every chip a device
    (
        "npu-smi/24.1.rc3-Ascend910-A3x16.txt",
        Vendor.HUAWEI,
        [Want("Ascend910C", tuple(range(16)), 65536)],
    ),
    # 310P: NPU ids 0, 32, 96, 32768 … but logical devices 0..5; no HBM column
    (
        "npu-smi/25.2.0-310P3x6-processes.txt",
        Vendor.HUAWEI,
        [Want("Ascend310P3", tuple(range(6)), 21527)],
    ),
    # nvidia-smi with more columns than asked; the smallest memory reported wins
    ("nvidia-smi/v100x8-extra-columns.csv", Vendor.NVIDIA, [Want("V100", tuple(range(8)), 32764)]),
    # amd-smi: CPU blocks before the GPUs, CACHE_INFO sizes that are not memory
    ("amd-smi/static-MI300Ax4-with-cpus.txt", Vendor.AMD, [Want("MI300A", (0, 1, 2, 3), 64289)]),
    # no VRAM section: memory from the model table
    ("amd-smi/static-asic-MI308X.txt", Vendor.AMD, [Want("MI308X", (0,), 196608)]),
    ("amd-smi/static-MI300X-O-truncated.txt", Vendor.AMD, [Want("MI300X", (0,), 196608)]),
    # rocm-smi: ROCm 5 "Card series", ROCm 6 "Card Series", bytes of VRAM
    ("rocm-smi/rocm5-all-MI250x2.json", Vendor.AMD, [Want("MI250", (0, 1), 65536)]),
    ("rocm-smi/rocm6-all-MI250x1.json", Vendor.AMD, [Want("MI250", (0,), 65536)]),
    (
        "rocm-smi/productname-meminfo-RX7900XT.json",
        Vendor.AMD,
        [Want("Radeon-RX-7900-XT", (0,), 20464)],
    ),
    # cnmon 4.x (Inited/Driver, vMemory) and 5.x (Bus-Id, SR-IOV)
    (
        "cnmon/v4.20.11-MLU370-X4x3-vmemory.txt",
        Vendor.CAMBRICON,
        [Want("MLU370-X4", (0, 1, 2), 23308)],
    ),
    ("cnmon/v5.10.10-MLU370-X4x2.txt", Vendor.CAMBRICON, [Want("MLU370-X4", (0, 1), 23308)]),
    ("cnmon/v5.10.13-MLU370-X8x2.txt", Vendor.CAMBRICON, [Want("MLU370-X8", (0, 1), 23374)]),
]


@pytest.mark.parametrize(("name", "want_vendor", "want"), CASES, ids=[c[0] for c in CASES])
def test_parsers_read_the_tools_real_output(name, want_vendor, want):
    tool = name.split("/")[0]
    sets = PARSERS[tool](fixture(name))
    assert [Want(s.model, s.indices, s.memory_mib) for s in sets] == want
    assert {s.vendor for s in sets} == {want_vendor}
    assert {s.source for s in sets} == {tool}


def test_every_fixture_is_parsed_by_a_test_and_credited_in_the_readme():
    files = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file()}
    files.discard("README.md")
    assert files == {case[0] for case in CASES}
    readme = fixture("README.md")
    assert all(f"`{name}`" in readme for name in files)


def test_a_table_with_two_models_is_two_sets():
    text = "index, name, memory.total [MiB]\n0, NVIDIA H800, 81559 MiB\n1, NVIDIA H20, 97871 MiB\n"
    assert [(s.model, s.indices, s.memory_mib) for s in nvidia.parse(text)] == [
        ("H800", (0,), 81559),
        ("H20", (1,), 97871),
    ]


def test_nvidia_smi_without_header_or_units_reads_the_queried_columns():
    # --format=csv,noheader,nounits: what older mosu asked for
    sets = nvidia.parse("0, NVIDIA H800, 81559\n1, NVIDIA H800, [N/A]\n")
    assert [(s.model, s.indices, s.memory_mib) for s in sets] == [("H800", (0, 1), 81559)]


@pytest.mark.parametrize("parse", list(PARSERS.values()), ids=list(PARSERS))
@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "command not found",
        "{",
        "[]",
        '{"card0": 7}',
        "| 0 | 1 |",
        "GPU: x\n    VRAM:\n        SIZE: lots",
        "index, name\nfoo, bar",
        "| 0     910B3    | OK    | 90.0   40   0 / 0 |",  # an NPU row without its chip row
        "| 0 | 0000:C1:00.0 | 0   0 / 0   3318 / 65536 |",  # a chip row without its NPU row
    ],
)
def test_odd_output_gives_nothing_and_never_raises(parse, text):
    assert parse(text) == []


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_cut_or_mangled_fixture_never_raises(data):
    name = data.draw(st.sampled_from([c[0] for c in CASES]))
    text = fixture(name)
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    junk = data.draw(st.text(max_size=40))
    for variant in (text[:cut], text[cut:], text[:cut] + junk + text[cut:]):
        for parse in PARSERS.values():
            assert isinstance(parse(variant), list)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_random_text_never_raises(text):
    for parse in PARSERS.values():
        assert isinstance(parse(text), list)


# ------------------------------------------------------------ fake tools on PATH


def fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def printing(fixture_name: str, *, args: str) -> str:
    """A tool that prints the fixture only when called with mosu's arguments."""
    return (
        f'[ "$*" = "{args}" ] || {{ echo "unexpected arguments: $*" >&2; exit 2; }}\n'
        f"cat '{FIXTURES / fixture_name}'\n"
    )


def test_discovery_runs_each_vendor_tool_and_a_two_vendor_machine_is_two_types(tmp_path):
    fake_tool(
        tmp_path,
        "nvidia-smi",
        printing("nvidia-smi/v100x8-extra-columns.csv", args=" ".join(nvidia.ARGS)),
    )
    fake_tool(tmp_path, "npu-smi", printing("npu-smi/24.1.rc1-910B3x8.txt", args="info"))
    sets = discover(search_path=str(tmp_path))
    assert [(s.vendor, s.model, s.count, s.source) for s in sets] == [
        (Vendor.NVIDIA, "V100", 8, "nvidia-smi"),
        (Vendor.HUAWEI, "Ascend910B3", 8, "npu-smi"),
    ]


def test_amd_smi_is_preferred_and_rocm_smi_not_run_when_it_finds_devices(tmp_path):
    marker = tmp_path / "rocm-smi-ran"
    fake_tool(tmp_path, "amd-smi", printing("amd-smi/static-MI300Ax4-with-cpus.txt", args="static"))
    fake_tool(
        tmp_path,
        "rocm-smi",
        f"touch '{marker}'\ncat '{FIXTURES}/rocm-smi/rocm5-all-MI250x2.json'\n",
    )
    sets = discover(search_path=str(tmp_path))
    assert [(s.model, s.count, s.source) for s in sets] == [("MI300A", 4, "amd-smi")]
    assert not marker.exists()


def test_rocm_smi_stands_in_when_amd_smi_finds_nothing(tmp_path):
    fake_tool(tmp_path, "amd-smi", "echo 'AMDSMI_STATUS_INIT_ERROR' >&2\nexit 1\n")
    fake_tool(
        tmp_path,
        "rocm-smi",
        "echo 'WARNING: AMD GPU device(s) is/are in a low-power state'\n"
        + printing("rocm-smi/productname-meminfo-RX7900XT.json", args=" ".join(amd.ROCM_SMI_ARGS)),
    )
    sets = discover(search_path=str(tmp_path))
    assert [(s.model, s.count, s.source) for s in sets] == [("Radeon-RX-7900-XT", 1, "rocm-smi")]


def test_cnmon_is_run_without_arguments(tmp_path):
    fake_tool(tmp_path, "cnmon", printing("cnmon/v5.10.13-MLU370-X8x2.txt", args=""))
    sets = discover(search_path=str(tmp_path))
    assert [(s.vendor, s.model, s.indices) for s in sets] == [
        (Vendor.CAMBRICON, "MLU370-X8", (0, 1))
    ]


def test_a_failing_hanging_or_garbled_tool_contributes_nothing(tmp_path):
    fake_tool(tmp_path, "nvidia-smi", "echo 'NVIDIA-SMI has failed' \nexit 9\n")
    fake_tool(tmp_path, "npu-smi", "exec sleep 30\n")
    fake_tool(tmp_path, "cnmon", "head -c 300 /dev/urandom\n")
    assert discover(search_path=str(tmp_path), timeout_s=1.0) == []


def test_no_tools_no_devices(tmp_path):
    assert discover(search_path=str(tmp_path)) == []


def test_run_tool_returns_none_for_a_missing_executable(tmp_path):
    assert run_tool(str(tmp_path / "nope"), [], timeout_s=5) is None


def both_vendors(tmp_path: Path) -> str:
    """A search path with 16 Ascend 910C dies and 8 NVIDIA V100s."""
    fake_tool(tmp_path, "npu-smi", printing("npu-smi/24.1.rc3-Ascend910-A3x16.txt", args="info"))
    fake_tool(
        tmp_path,
        "nvidia-smi",
        printing("nvidia-smi/v100x8-extra-columns.csv", args=" ".join(nvidia.ARGS)),
    )
    return str(tmp_path)


def test_mosu_up_registers_a_node_per_vendor_found(tmp_path):
    nodes, notes = gpus.local_gpus(node_name="box", search_path=both_vendors(tmp_path))
    assert nodes == [
        gpus.LocalGpus("box", 8, "V100", "nvidia-smi", Vendor.NVIDIA, 32764),
        gpus.LocalGpus("box-ascend910c", 16, "Ascend910C", "npu-smi", Vendor.HUAWEI, 65536),
    ]
    assert notes == []


def test_mosu_up_with_a_type_keeps_the_discovered_count_of_its_vendor(tmp_path):
    path = both_vendors(tmp_path)
    nodes, _ = gpus.local_gpus(node_name="box", gpu_type="Ascend910B", search_path=path)
    assert nodes == [gpus.LocalGpus("box", 16, "Ascend910B", "npu-smi", Vendor.HUAWEI, 65536)]
    nodes, _ = gpus.local_gpus(node_name="box", gpu_vendor="nvidia", search_path=path)
    assert [(n.gpu_type, n.count, n.vendor) for n in nodes] == [("V100", 8, Vendor.NVIDIA)]


def test_mosu_up_falls_back_to_declared_devices(tmp_path):
    nodes, _ = gpus.local_gpus(node_name="box", search_path=str(tmp_path))
    assert nodes == [gpus.LocalGpus("box", 8, "H800", "declared", Vendor.NVIDIA, 81559)]
    declared, _ = gpus.local_gpus(
        node_name="box",
        gpus=4,
        gpu_type="MLU370-X8",
        gpu_vendor="Cambricon",
        search_path=both_vendors(tmp_path),
    )
    assert declared == [gpus.LocalGpus("box", 4, "MLU370-X8", "declared", Vendor.CAMBRICON, 24576)]


def test_mosu_up_leaves_out_a_set_not_numbered_from_zero(tmp_path):
    rows = "index, name, memory.total [MiB]\n0, NVIDIA A100-SXM4-80GB, 81920 MiB\n"
    rows += "1, Tesla T4, 15360 MiB\n"
    fake_tool(tmp_path, "nvidia-smi", f"printf '{rows}'\n")
    nodes, notes = gpus.local_gpus(node_name="box", search_path=str(tmp_path))
    assert [(n.name, n.gpu_type, n.count) for n in nodes] == [("box", "A100", 1)]
    assert notes == [
        "1 x T4 (nvidia-smi, devices 1-1) left out: declare them on a node of their own"
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus": 8, "gpu_vendor": "intel"}, "unknown vendor 'intel'"),
        ({"gpus": 8, "gpu_type": "Ascend910B", "gpu_vendor": "nvidia"}, "made by huawei"),
        ({"gpu_vendor": "intel"}, "unknown vendor 'intel'"),
    ],
)
def test_mosu_up_refuses_a_bad_vendor_naming_the_option(tmp_path, kwargs, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        gpus.local_gpus(node_name="box", search_path=str(tmp_path), **kwargs)
    assert caught.value.field == "--gpu-vendor"


def test_mosu_up_declaring_another_vendor_names_the_type_it_needs(tmp_path):
    for kwargs in ({"gpus": 8, "gpu_vendor": "huawei"}, {"gpu_vendor": "huawei"}):
        with pytest.raises(InvalidInput, match=r"e\.g\. --gpu-type Ascend910B") as caught:
            gpus.local_gpus(node_name="box", search_path=str(tmp_path), **kwargs)
        assert caught.value.field == "--gpu-type"
    nodes, _ = gpus.local_gpus(node_name="box", gpus=2, gpu_vendor="nvidia")
    assert [(n.gpu_type, n.vendor) for n in nodes] == [("H800", Vendor.NVIDIA)]


# ------------------------------------------------------------ declared devices


def test_declared_devices_take_vendor_and_memory_from_the_table():
    npus = declared_devices("Ascend910B", 8, vendor="huawei")
    assert npus == DeviceSet(Vendor.HUAWEI, "Ascend910B", tuple(range(8)), 65536, "declared")
    assert declared_devices("ascend910b", 2).model == "Ascend910B"
    assert declared_devices("G2", 4).vendor is Vendor.NVIDIA
    assert declared_devices("H800", 1, memory_mib=1000).memory_mib == 1000


def test_declared_devices_with_a_bad_vendor_or_count_name_the_field():
    with pytest.raises(InvalidInput, match="unknown vendor 'intel'") as caught:
        declared_devices("Ascend910B", 8, vendor="intel")
    assert caught.value.field == "gpu_vendor"
    with pytest.raises(InvalidInput, match="made by huawei, not amd"):
        declared_devices("Ascend910B", 8, vendor="amd")
    with pytest.raises(InvalidInput) as negative:
        declared_devices("H800", -1)
    assert negative.value.field == "gpus"
