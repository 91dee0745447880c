"""``mosu policy list``: every ordering, placement and profile, one line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosu.cli.main import main
from mosu.engine.policies import ORDERINGS, PLACEMENTS
from mosu.engine.profiles import PROFILES


def test_list_names_every_policy_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["policy", "list", "--output", "json"])
    assert exit_info.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    by_kind: dict[str, list[str]] = {}
    for row in rows:
        assert row["description"], row
        by_kind.setdefault(row["kind"], []).append(row["name"])
    assert by_kind == {
        "ordering": list(ORDERINGS),
        "placement": list(PLACEMENTS),
        "profile": list(PROFILES),
    }
    mosu = next(r for r in rows if r["kind"] == "profile" and r["name"] == "mosu")
    assert "placement mosu" in mosu["description"] and "(default)" in mosu["description"]


def test_table_output_lists_the_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["policy", "list"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in (*ORDERINGS, *PLACEMENTS, *PROFILES):
        assert name in out


@pytest.mark.parametrize("command", ["up", "server"])
def test_an_unknown_placement_stops_the_platform_before_it_starts(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--placement", "nope", "--data-dir", str(tmp_path), "--port", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "unknown placement 'nope'; choose one of:" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "mosu.db").exists()
