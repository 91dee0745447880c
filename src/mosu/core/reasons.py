"""Typed reasons: why a job is not running, why it was preempted, why it is being stopped.

Every reason the API reports or the store keeps is one of these values; a new reason is
a new member here, and the OpenAPI document lists them.
"""

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
    WAITING_FOR_PREEMPTED = "waiting-for-preempted"
    """Started by the engine on capacity that preempted jobs still hold while they
    checkpoint; it starts in the first cycle after they exit. Given by the platform,
    never by the engine, which sees a victim's GPUs as free once it decides to preempt."""
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
    BACKFILL = "backfill"
    """It started as preemptible backfill; the waiting gang it could delay starts now."""


class StopReason(StrEnum):
    """Why the platform asked an active job to stop: what its exit will mean."""

    PREEMPT = "preempt"
    """The engine preempted it (reclaim, priority or fair share); it is requeued."""
    NODE_DOWN = "node-down"
    """A node it runs on stopped reporting or lost the replica; it is requeued."""
    DRAIN = "drain"
    """An operator drained a node it runs on; it is requeued."""
    CANCEL = "cancel"
    """Its owner cancelled it."""
    MAX_RUNTIME = "max-runtime"
    """It ran longer than its ``max_runtime``; it fails."""
    CREDITS_EXHAUSTED = "credits-exhausted"
    """Its tenant ran out of credits under the ``stop`` policy; it is requeued and held."""

    @property
    def requeues(self) -> bool:
        """Whether the job goes back to the queue when its processes are gone: a stop
        that is not the job's doing does not end it."""
        return self in _REQUEUING


_REQUEUING = frozenset(
    {StopReason.PREEMPT, StopReason.NODE_DOWN, StopReason.DRAIN, StopReason.CREDITS_EXHAUSTED}
)
