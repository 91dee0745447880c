"""The HTTP client of the mosu API; the CLI talks to the service only through it."""

from mosu.client.api import Client, ServerUnreachable

__all__ = ["Client", "ServerUnreachable"]
