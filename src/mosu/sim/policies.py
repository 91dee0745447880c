"""The engine's named policies as experiments and the command line choose them.

The CLI reaches the engine only through ``sim`` (experiments) and ``client`` (the
platform): a command that lists or picks a policy by name reads it here. The one
registry itself is ``mosu.engine.policies`` (orderings, placements) with the profiles
of ``mosu.engine.profiles``.
"""

from __future__ import annotations

from mosu.engine.policies import FILL_PLACEMENTS, ORDERINGS, PLACEMENTS, POLICIES
from mosu.engine.profiles import DEFAULT_PROFILE, PROFILES, SchedulingProfile, build_profile

__all__ = [
    "DEFAULT_PROFILE",
    "FILL_PLACEMENTS",
    "ORDERINGS",
    "PLACEMENTS",
    "POLICIES",
    "PROFILES",
    "SchedulingProfile",
    "build_profile",
]
