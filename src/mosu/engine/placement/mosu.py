"""mosu's default placement (see docs/placement.md)."""

from __future__ import annotations

from mosu.engine.placement.fgd import Fgd


class Mosu(Fgd):
    name = "mosu"
