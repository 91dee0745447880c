"""The web dashboard served beside the API (``mount_dashboard``); see docs/dashboard.md."""

from mosu.web.app import mount_dashboard

__all__ = ["mount_dashboard"]
