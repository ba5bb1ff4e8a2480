"""edge: a Step runtime for small machines.

Layer order (a module imports only modules above it):

    errors, settings            plain values
    schema, steps               user config: validation, discovery, trigger models
    _loops                      waiting from asyncio, trio or a thread (Completion, Pending)
    store                       LMDB (the only importer of lmdb)
    tracing, _state, queues, streams, _cron   services over the store; take callables
                                (invoke=, on_change=, dispatch=), never the runtime
    context                     the ctx handed to handlers
    _boundary                   where handlers run (asyncio, trio, threads) and the guard around them
    runtime                     the composition root: builds every service explicitly, serves them
    server                      Granian bridge + HTTP routing + WebSocket (with _loops and
                                _boundary, the only importers of asyncio; the only one of granian)
    cli, build                  entry points (only cli configures logging and calls sys.exit)

Importing edge runs no user code.
"""

from .api import ApiRequest, ApiResponse
from .errors import ConfigError, EdgeError, Retry, SchemaError, StorageFull
from .steps.helpers import cron, http, queue, state, stream

__all__ = [
    "ApiRequest", "ApiResponse",
    "EdgeError", "ConfigError", "SchemaError", "StorageFull", "Retry",
    "http", "queue", "cron", "state", "stream",
]
