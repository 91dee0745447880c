from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosu.cli.main import main

NODES = "sn,cpu_milli,memory_mib,gpu,model\n" + "".join(
    f"node-{k},32000,131072,{g},{t}\n" for k, (g, t) in enumerate([(8, "G2"), (4, "G2"), (2, "T4")])
)
PODS = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n" + "".join(
    f"pod-{k},{c},4096,{g},{m}\n"
    for k, (c, g, m) in enumerate(
        [(4000, 1, 1000), (2000, 1, 500), (8000, 2, 1000), (1000, 0, 0), (3000, 1, 250)]
    )
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_fill_writes_json_and_plot_and_prints_the_table(tmp_path: Path, capsys) -> None:
    nodes, pods = write(tmp_path, "nodes.csv", NODES), write(tmp_path, "pods.csv", PODS)
    out = tmp_path / "out"
    argv = ["sim", "fill", "--nodes", str(nodes), "--pods", str(pods)]
    argv += ["--policy", "bestfit", "--policy", "mosu", "--seeds", "2", "--out", str(out)]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    result = json.loads((out / "fill.json").read_text())
    assert result["experiment"] == "fill" and result["gpus"] == 14
    assert result["seeds"] == [42, 43]
    for name in ("bestfit", "mosu"):
        entry = result["policies"][name]
        assert set(entry["unallocated_pct_at_100"]) == {"mean", "sd", "min", "max"}
        assert entry["curve"][0] == [0.0, 0.0]
    assert (out / "fill.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr()
    table = printed.out
    assert "bestfit" in table and "mosu" in table and "mean" in table
    assert f"wrote {out / 'fill.json'} and {out / 'fill.png'}\n" in printed.err


def test_a_malformed_pod_list_is_one_line_and_a_nonzero_exit(tmp_path: Path, capsys) -> None:
    nodes = write(tmp_path, "nodes.csv", NODES)
    pods = write(tmp_path, "pods.csv", PODS.replace("pod-2,8000", "pod-2,eight"))
    with pytest.raises(SystemExit) as info:
        main(["sim", "fill", "--nodes", str(nodes), "--pods", str(pods), "--out", str(tmp_path)])
    assert info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pods.csv:4 column 'cpu_milli': bad value 'eight'" in err
    assert "\n" not in err and "Traceback" not in err


def test_an_unknown_policy_is_refused(tmp_path: Path, capsys) -> None:
    nodes, pods = write(tmp_path, "nodes.csv", NODES), write(tmp_path, "pods.csv", PODS)
    with pytest.raises(SystemExit) as info:
        main(["sim", "fill", "--nodes", str(nodes), "--pods", str(pods), "--policy", "nope"])
    assert info.value.code != 0
    assert "unknown placement 'nope'" in capsys.readouterr().err
