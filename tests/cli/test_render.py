"""Tables fit 80 columns without losing a character: words wrap whole, and a table too
wide even then is split, each part repeating the row's name."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from mosu.cli.render import fitted, table

REPLAY = [
    "avg JCT s",
    "p99 JCT s",
    "avg queue s",
    "gang≥16 p99 queue s",
    "util",
    "quota att.",
    "reclaim p99 s",
    "Jain",
    "preempt",
    "lost GPU-h",
]


def rendered(t: Table, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(fitted(t, width))
    return out.getvalue()


def replay_table() -> Table:
    t = Table(title="policies side by side")
    t.add_column("policy")
    for header in REPLAY:
        t.add_column(header, justify="right")
    for policy in ("fifo-backfill", "kueue", "mosu"):
        t.add_row(policy, "31,246", "312,345", "21,000", "123,456", "0.812", "0.998", "1,234",
                  "0.912", "12,345", "9,876")  # fmt: skip
    return t


QUEUE = table(
    None,
    ["#", "job", "tenant", "name", "gpus", "reason", "estimated start"],
    [(1, 4, "acme", "eval", "1x4", "waiting-for-guarantee", "60m from now")],
)


@pytest.mark.parametrize(
    ("make", "words", "parts"),
    [
        (replay_table, ["fifo-backfill", "31,246", "312,345", "9,876", "gang≥16"], 2),
        (lambda: QUEUE, ["waiting-for-guarantee", "60m from now", "estimated start"], 1),
    ],
    ids=["replay comparison", "queue"],
)
def test_a_table_fits_80_columns_and_keeps_every_word_whole(make, words, parts):
    text = rendered(make())
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text
    for word in words:
        assert any(word in line for line in lines), word
    assert sum(line.startswith("┏") for line in lines) == parts
    if parts > 1:  # every part names its rows
        assert text.count("fifo-backfill") == parts


def test_a_table_that_fits_is_left_as_it_is():
    small = table(None, ["a", "b"], [(1, 2)])
    assert fitted(small, 80) is small
