"""The HTTP/WebSocket server: Granian bridge, routing, the runtime's own endpoints.

Only this package (and the boundary that runs handlers) imports ``granian`` and ``asyncio``.
"""

from __future__ import annotations

__all__ = ["run_server", "build_app"]


def build_app(runtime, settings):
    """The HTTP app of ``runtime``, with every endpoint and the stream WebSocket, built explicitly."""
    from .._metrics import metrics_endpoints
    from ..queues.endpoints import queue_endpoints
    from .app import EdgeApp
    from .console import console_endpoints  # console hook (issue 13)
    from .endpoints import core_endpoints
    from .access import AccessPolicy
    from .ws import StreamSockets

    endpoints = {**core_endpoints(), **queue_endpoints(), **console_endpoints(), **metrics_endpoints()}
    access = AccessPolicy(settings)  # who may use /__edge/ and the streams (edge/server/access.py)
    sockets = StreamSockets(runtime.streams, runtime.tracer, access=access, idle_timeout=settings.idle_timeout)
    return EdgeApp(runtime, settings, endpoints=endpoints, websocket=sockets, access=access)


def run_server(settings, discovery, *, out=None, on_ready=None) -> int:
    """Open the runtime for ``discovery`` and serve it until SIGTERM/SIGINT; return the exit code."""
    from ..runtime import Runtime
    from .._limits import raise_open_files_limit  # faults hook (issue 10 item 4)

    raised = raise_open_files_limit()  # before Granian is imported (it raises it on import too)
    from .bridge import check_port_free, serve

    check_port_free(settings.host, settings.port)  # before anything is opened: PortInUse, exit 1

    runtime = Runtime.open(settings, discovery, out=out)
    if raised:
        runtime.tracer.log("debug", raised)  # faults hook (issue 10 item 4)
    return serve(runtime, build_app(runtime, settings), settings, on_ready=on_ready)
