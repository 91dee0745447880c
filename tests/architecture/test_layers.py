"""The engine stays pure and the layers point inward.

These read the source, not the runtime, so a violation is caught even in a
branch no test executes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "mosu"

# Imports that would give the engine a clock, the filesystem, the network,
# threads or hidden randomness. ``random`` is allowed only as a type for a
# ``random.Random`` passed in, so importing the module is fine but calling
# its module-level functions is not (checked below).
FORBIDDEN_IN_ENGINE = {
    "time",
    "datetime",
    "os",
    "socket",
    "asyncio",
    "threading",
    "subprocess",
    "sqlalchemy",
    "fastapi",
    "httpx",
    "ray",
    "typer",
    "rich",
    "pathlib",
    "io",
    "logging",
    "mosu.sim",
    "mosu.traces",
    "mosu.service",
    "mosu.client",
    "mosu.agent",
    "mosu.cli",
}
RANDOM_MODULE_CALLS = {
    "random",
    "randint",
    "choice",
    "choices",
    "shuffle",
    "sample",
    "uniform",
    "seed",
    "gauss",
    "randrange",
}

# package -> packages of mosu it must never import
LAYER_RULES = {
    "core": {"engine", "traces", "sim", "service", "client", "agent", "cli"},
    "engine": {"traces", "sim", "service", "client", "agent", "cli"},
    "traces": {"engine", "sim", "service", "client", "agent", "cli"},
    "sim": {"service", "client", "agent", "cli"},
    "client": {"engine", "sim", "traces", "service", "agent", "cli"},
}


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _matches(module: str, banned: str) -> bool:
    return module == banned or module.startswith(banned + ".")


@pytest.mark.parametrize("path", _modules("engine"), ids=lambda p: str(p.relative_to(SRC)))
def test_engine_imports_nothing_that_does_io(path: Path) -> None:
    bad = [
        f"line {line}: {mod}"
        for line, mod in _imports(path)
        if any(_matches(mod, banned) for banned in FORBIDDEN_IN_ENGINE)
    ]
    assert not bad, f"{path.relative_to(SRC)} imports I/O or clock modules: {bad}"


@pytest.mark.parametrize("path", _modules("engine"), ids=lambda p: str(p.relative_to(SRC)))
def test_engine_never_uses_global_randomness(path: Path) -> None:
    tree = ast.parse(path.read_text())
    bad = [
        f"line {node.lineno}: random.{node.func.attr}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "random"
        and node.func.attr in RANDOM_MODULE_CALLS
    ]
    assert not bad, f"{path.relative_to(SRC)} uses the global random generator: {bad}"


@pytest.mark.parametrize("package", sorted(LAYER_RULES))
def test_layers_point_inward(package: str) -> None:
    banned = {f"mosu.{p}" for p in LAYER_RULES[package]}
    bad = [
        f"{path.relative_to(SRC)} line {line}: {mod}"
        for path in _modules(package)
        for line, mod in _imports(path)
        if any(_matches(mod, b) for b in banned)
    ]
    assert not bad, f"mosu.{package} reaches outward: {bad}"


def test_importing_mosu_starts_nothing() -> None:
    """Nothing runs at import: no module-level environment reads in the pure layers."""
    bad = []
    for package in ("core", "engine", "traces", "sim"):
        for path in _modules(package):
            tree = ast.parse(path.read_text())
            for node in tree.body:
                text = ast.unparse(node)
                if "os.environ" in text or "os.getenv" in text:
                    bad.append(f"{path.relative_to(SRC)} line {node.lineno}")
    assert not bad, f"module-level environment access: {bad}"
