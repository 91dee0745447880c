"""A reason is a member of its enum everywhere: no module assigns or compares a job's
pending or stop reason with a bare string, which could name a reason that does not exist."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mosu.core.reasons import PendingReason, PreemptReason, StopReason

SRC = Path(__file__).resolve().parents[2] / "src" / "mosu"
REASON_ATTRIBUTES = {"stop_reason", "pending_reason", "stop_requested"}
REASON_VALUES = {r.value for r in (*PendingReason, *PreemptReason, *StopReason)}


def _is_reason(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in REASON_ATTRIBUTES


def _is_text(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_text(e) for e in node.elts)
    return False


def _names_a_reason(node: ast.expr) -> bool:
    """A string compared with anything that spells a reason's value."""
    if isinstance(node, ast.Constant):
        return node.value in REASON_VALUES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_reason(e) for e in node.elts)
    return False


def _bare_strings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Assign):
            pairs = [(t, node.value) for t in node.targets]
            if any(isinstance(t, ast.Tuple) for t in node.targets) and isinstance(
                node.value, ast.Tuple
            ):
                pairs = [
                    (t, v)
                    for target in node.targets
                    if isinstance(target, ast.Tuple)
                    for t, v in zip(target.elts, node.value.elts, strict=False)
                ]
            found += [f"line {node.lineno}" for t, v in pairs if _is_reason(t) and _is_text(v)]
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if (any(_is_reason(s) for s in sides) and any(_is_text(s) for s in sides)) or any(
                _names_a_reason(s) for s in sides
            ):
                found.append(f"line {node.lineno}")
    return found


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_reasons_are_never_bare_strings(path: Path) -> None:
    bad = _bare_strings(path)
    assert not bad, f"{path.relative_to(SRC)}: a reason as a bare string at {bad}"


def test_the_check_sees_a_bare_string(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "row.stop_reason = 'cancel'\n"
        "job.stop_reason, job.x = 'drain', False\n"
        "if row.pending_reason in ('queued',): pass\n"
        "row.stop_reason = StopReason.CANCEL\n"
        "if reason == 'waiting-for-guarantee': pass\n"
        "if kind == 'node-registered': pass\n"
    )
    assert _bare_strings(sample) == ["line 1", "line 2", "line 3", "line 5"]


def test_every_pending_reason_has_words_on_the_dashboard() -> None:
    from mosu.core.reasons import PendingReason
    from mosu.web.render import REASON_WORDS

    assert set(REASON_WORDS) == {r.value for r in PendingReason}
