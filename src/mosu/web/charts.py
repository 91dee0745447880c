"""Chart payloads: what ``static/app.js`` draws with uPlot, built from history views.

A payload is plain JSON embedded in the page (``<script type="application/json">``):
``x`` (bucket end times, epoch seconds), ``series`` (label, colour, values; stacked
when ``stack`` is true) and flat reference ``lines`` (the sum of guarantees, capacity).
Stacks keep the largest ``TOP`` labels and sum the rest, so a hundred tenants stay
readable.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mosu.service.services.history import OTHERS, Window

TOP = 10
OTHERS_COLOR = "#b8bec7"


PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#3b6ea5",
    "#d4a6c8",
    "#86bcb6",
    "#8cd17d",
    "#b6992d",
    "#499894",
    "#e49444",
    "#d37295",
    "#a0cbe8",
    "#79706e",
    "#6a3d9a",
)
"""Twenty well-separated colours; a tenant's is chosen by a hash of its name."""


def tenant_color(name: str) -> str:
    """A stable colour per tenant, the same on every page and chart."""
    if name == OTHERS or name.endswith(" more"):
        return OTHERS_COLOR
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return PALETTE[digest % len(PALETTE)]


def bucket_ends(window: Window) -> list[float]:
    return [round(float(t), 1) for t in window.edges()[1:]]


def stacked(
    title: str,
    window: Window,
    series: dict[str, list[float]],
    *,
    unit: str,
    lines: dict[str, float] | None = None,
    top: int = TOP,
) -> dict[str, Any]:
    ranked = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    shown = [(label, values) for label, values in ranked if label != OTHERS][:top]
    rest = [values for label, values in ranked if (label, values) not in shown]
    out = [{"label": label, "color": tenant_color(label), "values": v} for label, v in shown]
    if rest:
        summed = [round(sum(col), 3) for col in zip(*rest, strict=True)]
        label = OTHERS if OTHERS in series and len(rest) == 1 else f"{len(rest)} more"
        out.append({"label": label, "color": OTHERS_COLOR, "values": summed})
    return {
        "title": title,
        "unit": unit,
        "stack": True,
        "x": bucket_ends(window),
        "series": out,
        "lines": [{"label": k, "value": v} for k, v in (lines or {}).items()],
    }


def single(
    title: str, window: Window, label: str, values: list[float], *, unit: str, color: str
) -> dict[str, Any]:
    return {
        "title": title,
        "unit": unit,
        "stack": False,
        "x": bucket_ends(window),
        "series": [{"label": label, "color": color, "values": values}],
        "lines": [],
    }
