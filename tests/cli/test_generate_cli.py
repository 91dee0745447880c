"""``mosu sim generate``: native files a replay reads, equal to the library's workload."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosu.cli.main import main
from mosu.traces import native, synthetic


def run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "generate", *args])
    return int(exit_info.value.code or 0)


@pytest.mark.parametrize("mix", ["kalos", "seren"])
def test_generate_writes_the_seeded_workload_in_the_native_format(tmp_path: Path, mix: str) -> None:
    out = tmp_path / mix
    args = ["--mix", mix, "--seed", "4", "--load", "1.1", "--days", "1", "--gpus", "256"]
    assert run([*args, "--out", str(out)]) == 0
    make = synthetic.generate_kalos if mix == "kalos" else synthetic.generate
    tenants, jobs = make(4, days=1.0, gpus=256, load=1.1)
    assert native.load_jobs(out / "jobs.csv") == jobs
    assert native.load_tenants(out / "tenants.csv") == tenants
    header = (out / "jobs.csv").read_text().splitlines()[0]
    assert header.endswith("checkpoint_every_s") == (mix == "kalos")


def test_the_generated_kalos_week_replays(tmp_path: Path) -> None:
    out = tmp_path / "kalos"
    assert run(["--mix", "kalos", "--days", "0.25", "--gpus", "128", "--out", str(out)]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sim", "replay", "--trace", f"mosu:{out / 'jobs.csv'}",
                "--tenants", str(out / "tenants.csv"), "--out", str(tmp_path / "replay"),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 0
    assert (tmp_path / "replay" / "replay.json").exists()


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["--load", "0"], "--load, --days and --gpus must be positive"),
        (["--mix", "kalos", "--gpus", "32"], "gpus must be at least 96"),
        (["--mix", "philly"], "'philly'"),
    ],
    ids=["zero load", "a cluster too small for three labs", "an unknown mix"],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], want: str
) -> None:
    assert run([*args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert want in err
    assert len(err.splitlines()) == 1
