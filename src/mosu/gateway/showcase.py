"""The public showcase (mounted on the gateway): filled in by the showcase module."""

from __future__ import annotations

from mosu.gateway.proxy import Gateway


def mount_showcase(gateway: Gateway) -> None:
    """Nothing yet."""
