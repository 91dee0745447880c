"""The security suite runs real servers and real jobs, with the end-to-end fixtures."""

from tests.e2e.conftest import make_server, work

__all__ = ["make_server", "work"]
