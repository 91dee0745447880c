"""The engine's named policies as experiments and the command line choose them.

The CLI reaches the engine only through ``sim`` (experiments) and ``client`` (the
platform): a command that lists or picks a policy by name reads it here.
"""

from __future__ import annotations

from mosu.engine.placement.registry import POLICIES as PLACEMENTS
from mosu.engine.profiles import DEFAULT_PROFILE, PROFILES, build_profile

__all__ = ["DEFAULT_PROFILE", "PLACEMENTS", "PROFILES", "build_profile"]
