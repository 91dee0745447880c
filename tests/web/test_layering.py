"""The dashboard is the outermost layer: it reads through the services, and only the
API's app (which mounts it) imports it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mosu"
MOUNTED_BY = SRC / "service" / "app.py"
NEVER_FROM_WEB = ("mosu.engine", "mosu.agent", "mosu.cli", "mosu.client", "mosu.traces")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_only_the_apis_app_imports_the_dashboard():
    bad = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "web" not in path.relative_to(SRC).parts[:1]
        and path != MOUNTED_BY
        and any(m == "mosu.web" or m.startswith("mosu.web.") for m in _imports(path))
    ]
    assert bad == []


def test_the_dashboard_reads_through_services_not_the_engine_or_executors():
    bad = [
        f"{path.relative_to(SRC)}: {m}"
        for path in (SRC / "web").rglob("*.py")
        for m in _imports(path)
        if any(m == banned or m.startswith(banned + ".") for banned in NEVER_FROM_WEB)
    ]
    assert bad == []
