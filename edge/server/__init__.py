"""The HTTP/WebSocket server: Granian bridge, routing, the runtime's own endpoints.

Only this package imports ``granian`` and ``asyncio``.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["run_server"]

#: ``fn(runtime, app)`` hooks that later layers (queues, streams) register to add services,
#: endpoints and the WebSocket handler before the server starts.
INSTALLERS: list[Callable] = []


def run_server(settings, discovery, *, out=None, on_ready=None) -> int:
    """Open the runtime for ``discovery`` and serve it until SIGTERM/SIGINT; return the exit code."""
    import os

    from ..errors import ConfigError
    from ..runtime import Runtime

    forced = os.environ.get("EDGE_SERVER_INTERFACE", "").strip().lower()
    if forced not in ("", "rsgi", "asgi"):
        raise ConfigError(f'EDGE_SERVER_INTERFACE: expected "rsgi" or "asgi", got "{forced}"')
    from .bridge import serve
    from .endpoints import install_core_endpoints

    runtime = Runtime.open(settings, discovery, out=out)

    def install(app):
        from ..queues import install as install_queues
        from .ws import install_streams

        install_core_endpoints(app)
        install_queues(runtime, app)
        install_streams(runtime, app)
        for installer in INSTALLERS:
            installer(runtime, app)

    return serve(runtime, settings, on_ready=on_ready, install=install)
