"""edge: a Step runtime for small machines.

Layer order (a module imports only modules above it):

    errors, settings            plain values
    schema, steps               user config: validation, discovery, trigger models
    store                       LMDB (the only importer of lmdb)
    tracing, state, queues, streams, cron   services over the store; take a `dispatch` callable
    context                     the ctx handed to handlers
    runtime                     opens the store, builds dispatch, starts services in one nursery
    server                      Granian bridge + HTTP routing + WebSocket (only importer of granian/asyncio)
    cli, build                  entry points (only cli configures logging and calls sys.exit)

Importing edge runs no user code.
"""

from .api import ApiRequest, ApiResponse
from .errors import ConfigError, EdgeError, Retry, SchemaError
from .steps.helpers import cron, http, queue, state, stream

__all__ = [
    "ApiRequest", "ApiResponse",
    "EdgeError", "ConfigError", "SchemaError", "Retry",
    "http", "queue", "cron", "state", "stream",
]
