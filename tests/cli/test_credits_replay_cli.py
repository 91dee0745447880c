"""``mosu sim replay --rates --grants`` on a window of the Philly trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosu.cli.main import main
from tests.cli.test_replay_cli import write_inputs

REPO = Path(__file__).resolve().parents[2]
PHILLY = REPO.parent / "shared" / "traces" / "philly"


@pytest.mark.skipif(not PHILLY.exists(), reason="the shared Philly trace is not present")
def test_a_philly_window_is_charged_and_a_small_voucher_runs_out(tmp_path: Path) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text("resource,per_hour,borrowed_per_hour\nP100,2.5,1.5\n")
    grants = tmp_path / "grants.csv"
    grants.write_text(
        "tenant,amount,policy,note\n"
        "6214e9,10,hold,tiny voucher\n"
        "b436b2,1000000,best-effort,big voucher\n"
    )
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sim", "replay", "--trace", f"philly:{PHILLY / 'philly.csv'}",
                "--tenants", str(PHILLY / "philly_vc.csv"), "--cluster-scale", "0.25",
                "--window", "2017-10-01:2017-10-01 06:00:00", "--policy", "mosu",
                "--rates", str(rates), "--grants", str(grants), "--out", str(out),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 0
    report = json.loads((out / "credits.json").read_text())["policies"]["mosu"]
    tiny, big = report["6214e9"], report["b436b2"]
    assert tiny["ran_out_at_s"] is not None and tiny["granted"] == 10.0
    assert big["ran_out_at_s"] is None and big["burned"] > 0
    # Charged at most what the GPU-hours cost at the guaranteed rate, at least borrowed.
    for t in report.values():
        assert 1.5 * t["gpu_hours"] - 0.01 <= t["charged"] <= 2.5 * t["gpu_hours"] + 0.01


def test_rates_without_grants_is_one_line(tmp_path: Path, capsys) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text("resource,per_hour\nP100,2\n")
    jobs, tenants = write_inputs(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sim", "replay", "--trace", f"mosu:{jobs}", "--tenants", str(tenants),
                "--rates", str(rates), "--out", str(tmp_path / "out"),
            ]
        )  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--grants" in err and len(err.splitlines()) == 1
