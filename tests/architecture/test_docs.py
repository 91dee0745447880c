"""docs/ is a manual; measured figures live on one generated page, docs/results.md."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("render_results", ROOT / "scripts/render_results.py")
assert _spec is not None and _spec.loader is not None
render_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_results)

NUMBER_CELL = re.compile(r"^\s*[-+−]?\**[\d][\d,.]*\**\s*(±\s*[\d.]+)?\s*(%|ms|s|x|×)?\s*$")
MEASUREMENT_WORDS = re.compile(r"load average|quiet moment|on the 2-core", re.IGNORECASE)


def test_the_results_page_is_what_the_records_render() -> None:
    assert render_results.main(["render", "--check"]) == 0, (
        "docs/results.md differs from bench/results/*.json: "
        "run python scripts/render_results.py render"
    )


def test_no_measurement_is_copied_into_the_manual() -> None:
    """A table row with two or more cells that are bare numbers is a measurement, and so
    is a note on how busy the machine was: both belong on the generated page."""
    pages = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "results.md"]
    bad = []
    for page in [*pages, ROOT / "README.md"]:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            cells = line.strip().strip("|").split("|") if line.startswith("|") else []
            if sum(bool(NUMBER_CELL.match(c)) for c in cells) >= 2 or MEASUREMENT_WORDS.search(
                line
            ):
                bad.append(f"{page.relative_to(ROOT)}:{n}: {line[:80]}")
    assert not bad, "measured figures belong in docs/results.md:\n" + "\n".join(bad)


def test_the_document_is_the_last_json_object_printed() -> None:
    printed = (
        'progress {"not": "json at line start"}\n'
        '{"first": 1}\n'
        "policy  wall s\n"
        "mosu    1.0\n"
        '{\n "rows": [{"policy": "mosu", "seconds": 1.5}],\n "ok": true\n}\n'
        "done\n"
    )
    assert render_results.last_json_object(printed) == {
        "rows": [{"policy": "mosu", "seconds": 1.5}],
        "ok": True,
    }
    assert render_results.last_json_object("no json here\n") is None


def test_a_record_renders_its_command_and_every_figure() -> None:
    entry = {
        "name": "bench_example.quick",
        "about": "Time an example.",
        "command": "python bench/bench_example.py --quick",
        "recorded_at": "2026-01-01 00:00 UTC",
        "commit": "abc1234",
        "machine": {"cpus": 2, "load_average": [1.5, 2.0], "python": "3.11", "system": "x"},
        "wall_seconds": 3.2,
        "result": {
            "nodes": 1000,
            "profiles": {"mosu": {"seconds": 0.4213, "starts": 372}, "las": {"seconds": 0.17}},
            "rows": [{"policy": "fgd", "unallocated": {"mean": 5.06, "sd": 0.23}}],
            "curve": [[0.1, 0.0]] * 50,
        },
    }
    text = "\n".join(render_results.render_entry(json.loads(json.dumps(entry))))
    assert "python bench/bench_example.py --quick" in text
    assert "load average 1.5 before and 2.0 after" in text
    assert "- nodes: 1,000" in text
    assert "| profiles | seconds | starts |" in text
    assert "| mosu | 0.4213 | 372 |" in text
    assert "| las | 0.17 | – |" in text
    assert "| fgd | 5.06 | 0.23 |" in text
    assert "(50 values)" in text


def test_links_to_the_results_page_name_a_section_it_has() -> None:
    page = (ROOT / "docs" / "results.md").read_text()
    anchors = {
        render_results._anchor(line.lstrip("#").strip())
        for line in page.splitlines()
        if line.startswith("## ")
    }
    links = [
        (path.name, anchor)
        for path in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
        for anchor in re.findall(r"results\.md#([\w-]+)", path.read_text())
    ]
    assert links, "the manual links to its figures"
    missing = [link for link in links if link[1] not in anchors]
    assert not missing, f"links to sections docs/results.md does not have: {missing}"


def test_a_curve_a_benchmark_asks_to_plot_is_drawn_as_bars_from_its_points() -> None:
    result = {
        "points": [{"nodes": 100, "cycle_s": 0.5}, {"nodes": 1000, "cycle_s": 2.0}],
        "plot": {"points": "points", "x": "nodes", "y": ["cycle_s"]},
    }
    lines = render_results.render_plots(result)
    assert lines[:3] == ["```", "cycle_s by nodes", ""]
    small, large = lines[3], lines[4]
    assert small.startswith("  100 nodes │") and small.endswith(" 0.5")
    assert large.startswith("1,000 nodes │") and large.endswith(" 2")
    assert small.count("█") * 4 == large.count("█") == render_results.BAR_WIDTH
    assert render_results.render_plots({"points": []}) == []
