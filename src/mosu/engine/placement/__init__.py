"""Placement: choosing nodes and GPU indices for a gang, with pluggable node choice."""

from mosu.engine.placement.base import PlacementPolicy, choose_gpus, place_job

__all__ = ["PlacementPolicy", "choose_gpus", "place_job"]
