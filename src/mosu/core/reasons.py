"""Typed reasons: why a job is not running, why a job was preempted."""

from __future__ import annotations

from enum import StrEnum


class PendingReason(StrEnum):
    NO_FIT = "no-fit"
    """No placement exists right now; it will once capacity frees up."""
    NEVER_FITS = "never-fits"
    """No ready node set of the allowed GPU types could ever hold this gang."""
    QUOTA_EXCEEDED = "quota-exceeded"
    """Starting it would take the tenant above its limit."""
    WAITING_FOR_GUARANTEE = "waiting-for-guarantee"
    """Within the tenant's guarantee; capacity is being reclaimed for it."""
    RESERVED = "reserved"
    """The head of the line: capacity is being held for it from an estimated time."""
    BLOCKED_BY_RESERVATION = "blocked-by-reservation"
    """Would fit, but starting it would delay a job holding a reservation."""
    QUEUED = "queued"
    """Behind other jobs of its tenant or of higher priority."""
    CREDITS_EXHAUSTED = "credits-exhausted"
    """Its tenant's credits, less what its running jobs reserve, do not cover its
    estimated cost (the tenant's policy is ``hold`` or ``stop``)."""


class PreemptReason(StrEnum):
    RECLAIM = "reclaim"
    """Borrowed capacity returned to a tenant below its guarantee."""
    PRIORITY = "priority"
    """Displaced by a higher-priority job of the same tenant."""
    FAIR_SHARE = "fair-share"
    """Borrowed capacity rebalanced between borrowers."""
    NODE_DOWN = "node-down"
    """Its node stopped reporting."""
