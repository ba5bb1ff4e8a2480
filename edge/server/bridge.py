"""One process, two loops: asyncio hosts Granian's embedded RSGI server and every handler; trio
runs as its guest and owns the services (queues, cron, the tracer's flush, the store writer's
wake-ups). On uvloop when it is installed (faster on the HTTP path), else asyncio's own loop.

Order matters (STACK-NOTES 2–8): signal handlers are registered before trio starts; on
SIGTERM/SIGINT new requests get 503, in-flight ones get ``grace`` seconds, then are cancelled
(answered 503); WebSockets are closed by the app with a close frame; Granian stops; trio's
runtime is cancelled, which flushes logs and stops the store writer after committing; only
then does the asyncio loop end. The caller exits with ``os._exit`` (no Rust panic at exit).
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
from typing import Callable

import trio

from .._boundary import CANCEL_GRACE, HEADLINE_CHARS, Host, cancel, describe
from .._limits import connection_limit  # faults hook (issue 10 item 4)
from ..errors import PortInUse
from ..runtime import Runtime
from ._embed import HTTP1Settings, HTTPModes, Interfaces, quiet_server
from .access import startup_lines
from .app import EdgeApp

__all__ = ["serve", "ServerHandle"]


class ServerHandle:
    """What the caller learns once the server listens."""

    def __init__(self, app: EdgeApp, port: int):
        self.app = app
        self.port = port


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program (or another edge) holds.

    Granian binds with SO_REUSEPORT, with which a second server on the same port starts
    "fine" and the kernel splits connections between the two. A bind without SO_REUSEPORT
    fails while anyone holds the port, so edge tries one first and stops with a clear message.

    Raises:
        PortInUse: the port is taken.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            why = "is in use" if exc.errno == errno.EADDRINUSE else "needs privileges edge does not have"
            raise PortInUse(f"port {port} on {host} {why}; pick another --port (or EDGE_PORT)") from None
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --host or --port") from None
    finally:
        probe.close()


def _reserve_port(host: str, port: int) -> tuple[socket.socket | None, int]:
    """Bind ``port`` (0: any free one) with SO_REUSEPORT so Granian's listener can share it.

    Granian binds in its worker on Linux and does not report the port it got; holding our own
    socket on the same address until Granian listens tells us the port without a race.
    """
    if port != 0:
        return None, port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind((host, 0))
    return holder, holder.getsockname()[1]


def loop_factory() -> tuple[Callable | None, str]:
    """The host loop: uvloop's when it is installed (and not disabled with EDGE_LOOP=asyncio)."""
    wanted = os.environ.get("EDGE_LOOP", "").strip().lower()
    if wanted != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop, "uvloop"
    return None, "asyncio"


#: True once _serve has taken SIGTERM and SIGINT over: a KeyboardInterrupt after that is a handler's.
_signals_handled = False


def serve(runtime: Runtime, app: EdgeApp, settings, *,
          on_ready: Callable[[ServerHandle], None] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; return the exit code."""
    factory, name = loop_factory()
    # The loop is not closed afterwards: _serve cancelled what was left with a bounded wait, and
    # asyncio.Runner's close would wait without one for a task that ignores its cancellation.
    # The caller exits with os._exit.
    loop = asyncio.Runner(loop_factory=factory).get_loop()
    loop.set_exception_handler(_loop_error(runtime))
    main = loop.create_task(_serve(runtime, app, settings, on_ready, name))
    while True:
        try:
            return loop.run_until_complete(main)
        except (SystemExit, KeyboardInterrupt) as exc:
            # Raised by a task or callback a handler started (edge handles SIGINT and SIGTERM
            # itself, so Python raises neither): it stopped the loop, and the process with the
            # handler's exit code. The loop goes on where it was.
            if main.done() or not _signals_handled:  # (a Ctrl-C before edge took SIGINT over)
                raise
            runtime.tracer.exception(
                f"a task or callback a handler started raised {describe(exc, HEADLINE_CHARS)}; edge goes on "
                "serving (a handler cannot stop the server)", exc)


def _loop_error(runtime):
    """The host loop's exception handler: what asyncio would print as plain text on stderr (a
    callback that raised, a task's exception nobody retrieved) is one error line in the log."""
    def report(loop, context) -> None:
        exc = context.get("exception")
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return  # said once already, when it reached the loop (serve)
        message = f"asyncio: {context.get('message') or 'error in a callback'}"
        if exc is None:
            runtime.tracer.log("error", message)
        else:
            runtime.tracer.exception(f"{message}: {describe(exc, HEADLINE_CHARS)}", exc)

    return report


async def _serve(runtime: Runtime, app: EdgeApp, settings, on_ready, loop_name: str) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    global _signals_handled
    _signals_handled = True

    started, trio_done, cancel_scope = Host(loop).start_runtime(runtime)
    await started
    if trio_done.done():  # the runtime failed to start
        return _report(runtime, trio_done.result())

    holder, port = _reserve_port(settings.host, settings.port)
    target, interface = _interface(app)
    server = quiet_server(
        target,
        address=settings.host,
        port=port,
        interface=interface,
        websockets=True,
        runtime_threads=1,
        blocking_threads=1,
        backlog=1024,
        # faults hook (issue 10 item 4): connections past 1,024 are accepted, idle ones time out
        backpressure=connection_limit(),
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.idle_timeout * 1000)),
        http=HTTPModes.http1,  # "auto" waits for the first bytes with no timeout at all
    )
    serving = loop.create_task(server.serve())
    try:
        await _wait_listening(settings.host, port, serving)
    except OSError as exc:
        stop.set()
        runtime.tracer.log("error", f"cannot listen on {settings.host}:{port}: {exc}; pick another --port (or EDGE_PORT)")
        code = 1
    else:
        code = 0
        steps = len(runtime.steps)
        runtime.tracer.log("info", f"edge listening on http://{settings.host}:{port} "
                                   f"({steps} step{'' if steps == 1 else 's'}, data in {settings.data_dir}, "
                                   f"{loop_name} loop)")
        for level, line in startup_lines(settings, port, runtime.discovery.streams):  # hook, issue 11
            runtime.tracer.log(level, line)
        if on_ready is not None:
            on_ready(ServerHandle(app, port))
        _release_startup_memory()
    finally:
        if holder is not None:
            holder.close()

    waiters = [loop.create_task(stop.wait()), serving, trio_done]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    crashed = trio_done.done() and not stop.is_set()
    if crashed:  # the runtime itself failed: said once, below; exit 1
        code = 1

    # Graceful stop: 503 for new requests, a bounded grace for in-flight ones.
    runtime.stopping = True
    grace_ends = loop.time() + settings.grace
    if not await app.wait_idle(settings.grace):
        runtime.tracer.log("warn", f"{app.inflight} request(s) still running after {settings.grace}s; cancelling them")
        app.cancel_inflight()
        if not await app.wait_idle(CANCEL_GRACE):
            left = app.answer_stragglers()
            runtime.tracer.log("warn", f"{left} request(s) went on after being cancelled; answered 503, and their "
                                       "handlers are left to end with the process")
    # runs that outlived their HTTP timeout (the client has its 504): the rest of the grace
    await runtime.boundary.wait_detached(grace_ends - loop.time())
    if app.websocket is not None:
        await app.websocket.close_all()
    if app.websockets_served:
        await _websockets_flushed(app)
    server.stop()
    if not serving.done():
        await serving
    if not trio_done.done():
        loop.call_soon(cancel_scope.cancel)
    outcome = await trio_done
    error = _report(runtime, outcome)
    await _stop_stragglers(runtime)
    runtime.close()
    runtime.tracer.log("info", "edge stopped" if not (code or error) else "edge stopped after an error (exit code 1)")
    return 1 if (code or error) else 0


async def _stop_stragglers(runtime: Runtime) -> None:
    """Before the store closes: cancel what still runs on the loop (a handler that went on after
    its cancellation, a task a handler started) and wait up to :data:`CANCEL_GRACE` seconds.
    What is still running then never runs again: the loop is not run after this (serve leaves
    it, the process exits), so nothing writes to the closed store."""
    me = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not me and not task.done()]
    for task in left:
        cancel(task)
    if left:
        await asyncio.wait(left, timeout=CANCEL_GRACE)
    still = sum(1 for task in left if not task.done())
    if still:
        runtime.tracer.log("warn", f"{still} task(s) went on after being cancelled at shutdown; they end with the "
                                   "process")


def _interface(app: EdgeApp):
    """Pick Granian's interface for ``app``.

    RSGI is the faster one, but two things only its ASGI interface does: a WebSocket
    ``accept()`` that echoes a subprotocol (Motia's stream clients send their token as
    subprotocols ``["Authorization", token]``, and browsers and node's ``ws`` refuse a handshake
    that does not echo one), and back-pressure on a streamed response (Granian 2.8's RSGI stream
    buffers what a slow client has not read without a bound; its ASGI one holds 4 chunks and
    makes ``send`` wait). So an app with a stream that checks access (``canAccess``, or every
    stream with EDGE_STREAMS_REQUIRE_TOKEN=1), or with an HTTP step that streams its response,
    is served through ASGI; so is ``edge dev`` serving a project with a stream (a reload closes
    its sockets with code 1001 only there); any other through RSGI.
    ``EDGE_SERVER_INTERFACE=rsgi|asgi`` forces either. Costs: docs/streams.md.
    """
    forced = os.environ.get("EDGE_SERVER_INTERFACE", "").strip().lower()  # checked by Settings
    streams = app.runtime.discovery.streams
    wants_tokens = any(stream.can_access is not None for stream in streams)
    wants_tokens = wants_tokens or bool(streams and app.access.streams_require_token)  # hook, issue 11
    streams_responses = any(step.http_stream for step in app.runtime.steps.values())
    # `edge dev` restarts on every change: under ASGI its stream clients are told why (close
    # code 1001, going away), which RSGI cannot send (1005); speed matters less there.
    reloads = bool(streams) and app.dev
    app.interface = forced or ("asgi" if wants_tokens or streams_responses or reloads else "rsgi")
    if app.interface == "asgi":
        from .asgi import wrap

        return wrap(app), Interfaces.ASGINL
    return app, Interfaces.RSGI


#: After the last WebSocket callback returns, how long Granian gets to write the close frames.
WEBSOCKET_FLUSH = 0.05


async def _websockets_flushed(app: EdgeApp, limit: float = 2.0) -> None:
    """Wait (bounded) until every WebSocket callback has returned, then let Granian flush.

    Granian writes a socket's close frame when the callback's objects are freed; stopping the
    server before that drops the connection without one (clients see an abnormal closure).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while app.websockets_open and loop.time() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(WEBSOCKET_FLUSH)


async def _wait_listening(host: str, port: int, serving: asyncio.Task) -> None:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    for _ in range(200):
        if serving.done():
            serving.result()
            raise OSError("the server exited")
        try:
            reader, writer = await asyncio.open_connection(target, port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.01)
    raise OSError("the server did not start listening within 2 s")


def _release_startup_memory() -> None:
    """Give back to the OS what imports and discovery allocated and freed (a few MiB of a
    ~40 MiB process): collect garbage, then ask glibc to return free heap pages."""
    import gc

    gc.collect()
    # Everything alive now (modules, steps, schemas) lives for the whole run: keep it out of
    # the collector's full passes, which would otherwise walk it every few hundred requests.
    gc.freeze()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): nothing to trim


def _report(runtime: Runtime, outcome) -> int:
    """Say once why the runtime ended, if it failed; the exit code. ``outcome`` is read once
    (an ``outcome.Outcome`` may be unwrapped only once)."""
    error = getattr(outcome, "error", None)
    if error is None or isinstance(error, trio.Cancelled):
        return 0
    if isinstance(error, BaseExceptionGroup):
        only = error.split(trio.Cancelled)[1]  # (subgroup's test sees the group itself first)
        if only is None:
            return 0
        error = only.exceptions[0] if len(only.exceptions) == 1 else only
    runtime.tracer.exception(f"edge runtime failed: {type(error).__name__}: {error}", error)
    sys.stderr.flush()
    return 1
