"""The engine stays pure and the layers point inward.

These read the source, not the runtime, so a violation is caught even in a
branch no test executes.
"""

from __future__ import annotations

import ast
import sys
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

# package -> (packages of mosu it may import, libraries outside the standard one it may
# import). The layer table of docs/architecture.md in code: an edge not listed here
# fails, so a new edge is a decision made in review, with the table updated beside it.
LAYERS: dict[str, tuple[set[str], set[str]]] = {
    "core": (set(), {"pydantic"}),
    "engine": ({"core"}, {"numpy"}),
    "traces": ({"core"}, {"numpy"}),
    "sim": ({"core", "engine", "traces"}, {"numpy", "matplotlib"}),
    "documents": ({"core"}, {"yaml", "pydantic"}),
    "client": ({"core"}, {"httpx", "pydantic"}),
    "agent": ({"core"}, {"ray"}),
    "service": (
        {"core", "engine", "documents", "web", "sim", "traces"},
        {
            "alembic",
            "cryptography",
            "fastapi",
            "httpx",
            "numpy",
            "prometheus_client",
            "psycopg",
            "pydantic",
            "pydantic_settings",
            "sqlalchemy",
            "starlette",
            "uvicorn",
        },
    ),
    "web": (
        {"core", "service", "sim"},
        {"cryptography", "fastapi", "jinja2", "sqlalchemy", "starlette"},
    ),
    # The inference gateway: a process of its own over the store.
    "gateway": (
        {"core", "service"},
        {"fastapi", "httptools", "httpx", "sqlalchemy", "starlette", "uvicorn"},
    ),
    # ``up`` and ``server`` start the platform in-process (service, agent); the engine
    # is reached only through ``sim`` (experiments) and ``client`` (the platform).
    "cli": (
        {"core", "documents", "client", "sim", "traces", "service", "agent", "gateway"},
        {"typer", "rich", "pydantic", "matplotlib"},
    ),
}

LAZY_EDGES = {("service", "web"): {"service/app.py"}}
"""Edges outward, allowed only in these modules and only inside a function: the service
mounts the dashboard, which is built on the service."""

SUPERVISOR = "agent/supervisor.py"
"""Runs as ``python -I -S``: everything it imports, transitively, is the standard library."""


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


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def test_every_package_has_a_rule() -> None:
    found = {_package(p) for p in SRC.rglob("*.py") if p.parent != SRC}
    found |= {p.stem for p in SRC.glob("*.py") if not p.stem.startswith("__")}
    assert found, "the source tree was found"
    assert found <= set(LAYERS), f"packages without a layer rule: {found - set(LAYERS)}"


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_layers_point_inward(package: str) -> None:
    inner, libraries = LAYERS[package]
    bad = []
    for path in _modules(package):
        rel = str(path.relative_to(SRC))
        for line, mod in _imports(path):
            top, _, rest = mod.partition(".")
            if top == "mosu":
                target = rest.partition(".")[0]
                if not target or target == package or target in inner:
                    continue
                bad.append(f"{rel} line {line}: {mod}")
            elif top not in sys.stdlib_module_names | {"__future__"} | libraries:
                bad.append(f"{rel} line {line}: {mod} (a library outside its layer)")
    assert not bad, f"mosu.{package} reaches outside its layer: {bad}"


@pytest.mark.parametrize(("edge", "where"), sorted(LAZY_EDGES.items()))
def test_an_edge_outward_is_lazy_and_in_one_place(edge: tuple[str, str], where: set[str]) -> None:
    package, target = edge
    bad = []
    for path in _modules(package):
        rel = str(path.relative_to(SRC))
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            if not any(n and _matches(n, f"mosu.{target}") for n in names):
                continue
            if rel not in where or id(node) in top_level:
                bad.append(f"{rel} line {node.lineno}")
    assert not bad, f"mosu.{package} imports mosu.{target} outside a function of {where}: {bad}"


def test_the_supervisor_needs_only_the_standard_library() -> None:
    seen: set[Path] = set()
    todo = [SRC / SUPERVISOR]
    outside = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for parent in path.relative_to(SRC).parents:  # a package runs its __init__
            init = SRC / parent / "__init__.py"
            if init.exists() and init not in seen:
                todo.append(init)
        for line, mod in _imports(path):
            top = mod.partition(".")[0]
            if top == "mosu":
                todo += _sources_of(mod, path)
            elif top not in sys.stdlib_module_names and top != "__future__":
                outside.append(f"{path.relative_to(SRC)} line {line}: {mod}")
    assert len(seen) > 3, "the walk found the supervisor's modules"
    assert not outside, f"the supervisor's imports need more than the standard library: {outside}"


def _sources_of(module: str, importer: Path) -> list[Path]:
    """Files a ``mosu...`` import runs: the module, or the package and, for ``from
    package import name``, a submodule of that name."""
    base = SRC.parent.joinpath(*module.split("."))
    found = [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()]
    if (base / "__init__.py").exists():
        tree = ast.parse(importer.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                found += [
                    base / f"{a.name}.py" for a in node.names if (base / f"{a.name}.py").exists()
                ]
    return found


def test_importing_mosu_starts_nothing() -> None:
    """Nothing runs at import: no module-level environment reads in the pure layers."""
    bad = []
    for package in ("core", "engine", "traces", "sim", "documents"):
        for path in _modules(package):
            tree = ast.parse(path.read_text())
            for node in tree.body:
                text = ast.unparse(node)
                if "os.environ" in text or "os.getenv" in text:
                    bad.append(f"{path.relative_to(SRC)} line {node.lineno}")
    assert not bad, f"module-level environment access: {bad}"
