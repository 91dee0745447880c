"""The checks `make test` runs stay switched on: mypy strict over the shared records and
the engine, lint before tests, and a coverage floor."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_mypy_is_strict_for_core_and_engine() -> None:
    mypy = PYPROJECT["tool"]["mypy"]
    assert mypy["strict"] is True
    assert {"src/mosu/core", "src/mosu/engine"} <= set(mypy["files"])
    for override in mypy.get("overrides", []):
        # An override may relax one check for named modules, never switch checking off.
        assert not override.get("ignore_errors"), override
        assert set(override) <= {"module", "warn_return_any"}, override


def test_make_test_runs_lint_and_reports_coverage_under_a_floor() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile[makefile.index("\nlint:") :].split("\n\n")[0]
    assert "mypy" in lint and "ruff check" in lint
    test = makefile[makefile.index("\ntest:") :].split("\n\n")[0]
    assert re.search(r"^test: .*\blint\b", test, re.M)
    assert "--cov" in test
    floor = PYPROJECT["tool"]["coverage"]["report"]["fail_under"]
    assert floor >= 50
