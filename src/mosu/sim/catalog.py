"""The policy registry as rows to show: every ordering, placement and profile by name,
with its one-line description (``mosu policy list``)."""

from __future__ import annotations

from dataclasses import dataclass

from mosu.engine.policies import ORDERINGS, PLACEMENTS
from mosu.engine.profiles import DEFAULT_PROFILE, PROFILES, build_profile


@dataclass(frozen=True, slots=True)
class PolicyRow:
    kind: str
    """``ordering``, ``placement`` or ``profile``."""
    name: str
    description: str


def policy_catalog() -> list[PolicyRow]:
    rows = [PolicyRow("ordering", name, e.description) for name, e in ORDERINGS.items()]
    rows += [PolicyRow("placement", name, e.description) for name, e in PLACEMENTS.items()]
    for name, entry in PROFILES.items():
        profile = build_profile(name)
        default = " (default)" if name == DEFAULT_PROFILE else ""
        rows.append(
            PolicyRow(
                "profile",
                name,
                f"{entry.description}; ordering {profile.ordering.name}, "
                f"placement {profile.placement.name}{default}",
            )
        )
    return rows
