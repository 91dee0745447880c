"""One error hierarchy for every layer; the API and the CLI map it in one place each."""

from __future__ import annotations


class PlatformError(Exception):
    """Base of every error mosu raises on purpose. ``code`` is stable for clients."""

    code = "error"
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(PlatformError):
    """The caller sent something malformed or out of range."""

    code = "invalid"
    status = 422


class MalformedInput(InvalidInput):
    """The request body is not a well-formed document: bad syntax, duplicate keys, nested
    too deeply or too large once its YAML aliases are expanded."""

    code = "malformed"
    status = 400


class TooLarge(InvalidInput):
    """The request body is larger than the server accepts."""

    code = "too-large"
    status = 413


class UnsupportedMediaType(InvalidInput):
    """The request body is in a format this operation does not read."""

    code = "unsupported-media-type"
    status = 415


class Unavailable(PlatformError):
    """The store cannot be reached or is busy for now; the same request may succeed later."""

    code = "unavailable"
    status = 503


class NotFound(PlatformError):
    code = "not-found"
    status = 404


class Conflict(PlatformError):
    code = "conflict"
    status = 409


class Unauthorized(PlatformError):
    code = "unauthorized"
    status = 401


class Forbidden(PlatformError):
    code = "forbidden"
    status = 403


class IdempotencyKeyReused(InvalidInput):
    """An ``Idempotency-Key`` already used for a different submission of the same tenant."""

    code = "idempotency-key-reused"


class CapacityError(InvalidInput):
    """The request can never be satisfied by this cluster."""

    code = "capacity"


class TraceFormatError(InvalidInput):
    """A trace or data file is malformed; the message names file, line and column."""

    code = "trace-format"

    def __init__(self, path: str, line: int | None, column: str | None, reason: str) -> None:
        where = path
        if line is not None:
            where += f":{line}"
        if column is not None:
            where += f" column {column!r}"
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.column = column
