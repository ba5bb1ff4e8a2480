"""edge: a Step runtime for small machines.

Layer order (a module imports only modules above it):

    errors, settings, _format   plain values (and how numbers and lines are written)
    records, api                ctx's records; a request and a response as handlers see them
    _json, schema, _cron, steps  user config and input: depth-limited JSON, validation, cron
                                schedules (and the cron loop, which takes callables), discovery,
                                trigger models
    _loops                      waiting from asyncio, trio or a thread (Completion, Pending)
    store, _lock, _limits       LMDB (the only importer of lmdb); the data-dir lock; open files
    tracing, _state, queues, streams   services over the store; take callables
                                (invoke=, on_change=, dispatch=), never the runtime
    context, _legacy            the ctx handed to handlers (and Motia 0.x's state answers)
    _boundary                   where handlers run (asyncio, trio, threads) and the guard around them
    runtime                     the composition root: builds every service explicitly, serves them
    _metrics                    counters read at scrape time (GET /__edge/metrics)
    server                      Granian bridge + HTTP routing + WebSocket (with _loops and
                                _boundary, the only importers of asyncio; the only one of granian)
    testing                     edge.testing: the runtime in-process, for users' tests (it
                                hosts handlers on an asyncio loop, so it imports asyncio too)
    cli, build, scaffold        entry points (only cli configures logging and calls sys.exit)

The ``motia`` package (next to ``edge`` in the distribution) maps Motia's API onto this one.

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
