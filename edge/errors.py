"""Errors edge raises, and the few exceptions handlers may raise on purpose."""

from __future__ import annotations

__all__ = [
    "EdgeError",
    "ConfigError",
    "SchemaError",
    "MalformedJSON",
    "BadResult",
    "EnqueueError",
    "StoreError",
    "StorageFull",
    "PortInUse",
    "Retry",
]


#: Said when a value holds an integer msgpack cannot store (state, stream items, queue data).
INT_OUT_OF_RANGE = ("an integer is out of range (stored integers must fit in -2**63 .. 2**64-1; "
                    "send big numbers as strings)")


class EdgeError(Exception):
    """Base class of every error edge raises on purpose."""


class ConfigError(EdgeError):
    """A step file, stream file or CLI option is wrong; the message says where and how to fix it."""


class SchemaError(EdgeError):
    """Data did not match a schema; ``errors`` lists every problem with its JSON path."""

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.errors = errors or []


class MalformedJSON(SchemaError):
    """The bytes are not JSON at all (as opposed to JSON that does not match the schema)."""


class BadResult(EdgeError):
    """A handler returned something that cannot be sent (a status that is not a status, a body
    that is not JSON-encodable); the message says what and where."""


class EnqueueError(EdgeError):
    """``ctx.enqueue`` was called with a topic or data the step may not publish."""


class StoreError(EdgeError):
    """The data directory cannot be opened or written (permissions, full disk)."""


class PortInUse(EdgeError):
    """The HTTP port is taken (by another edge or another program): edge does not share it."""


class StorageFull(StoreError):
    """The disk holding the data directory is full: nothing was written. A handler may catch it
    (``except edge.StorageFull``); HTTP answers 507, queue messages are retried later."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path


class RequestBodyError(Exception):
    """The client broke the request body a streaming handler was reading (it went away, or
    sent more than --max-body): the client's doing, not the handler's. Answered ``status``
    (when nothing was sent yet) and not logged as the handler's error."""

    status = 400


class Retry(Exception):
    """Raised by a queue handler to ask for a retry after ``delay`` seconds; not logged as an error."""

    def __init__(self, delay: float | None = None):
        super().__init__(f"retry requested (delay={delay})")
        self.delay = delay
