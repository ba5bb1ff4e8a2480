"""Streaming HTTP responses: handlers that take ``HttpStreamArgs`` (Motia 1.0's ``MotiaHttpArgs``).

Such a handler writes its answer itself: ``await args.response.status(200)``,
``await args.response.headers({"content-type": "text/event-stream"})``, then
``args.response.writer.stream.write(b"data: ...\\n\\n")`` as often as it likes (server-sent
events), and reads the request body as a stream (``async for chunk in
args.request.request_body.stream``). Discovery marks those steps (``Step.http_stream``, from
the handler's annotation: ``edge.steps.discovery``); :class:`~edge.server.app.EdgeApp` sends only them here, so the
normal path pays one attribute check.

Granian's RSGI ``proto.response_stream(status, headers)`` starts the response with the first
write; writes never block the handler: they are queued and sent in order by one task on the
host loop. The response ends when the handler returns (``close()`` only refuses more writes).
One that fails after the first write (or that shutdown cancels) is cut off instead: what it
wrote is sent, then the connection closes without the last chunk, so the client knows the answer
is incomplete (the status went out with the first write and cannot say so). Only Granian's ASGI
interface can do that (``edge.server.asgi``); its RSGI stream ends as if complete (docs/streams.md).
Once the response has started, a client that goes away cancels the handler (an endless
event stream would otherwise run for nobody); a write after that raises ``ConnectionError``.
A handler that writes nothing and returns a normal result (a dict, an ``ApiResponse``) is
answered the normal way, so a Motia 1.0.4 handler that merely annotated ``MotiaHttpArgs``
still works.

Body: a body with a ``Content-Length`` is read first (within ``--max-body``), parsed as usual
into ``request.body``, and replayed by ``request_body.stream``; a chunked body is not read in
advance: ``request.body`` is None and ``request_body.stream`` yields chunks as they arrive.
"""

from __future__ import annotations

import asyncio
import collections
import threading

import trio

from .._boundary import CANCEL_GRACE, cancel
from .._loops import current_library
from ..api import ApiRequest, HttpStreamArgs, RequestBody, ResponseStream
from ..errors import RequestBodyError, StorageFull
from ..runtime import HandlerError, Skipped
from ..tracing import new_id
from .bodies import BodyTooLarge
from .responses import BadResult, build_response, error_response, storage_full

__all__ = ["serve_stream"]

#: Bytes a streaming handler may have written that are not yet handed to Granian. Past it,
#: ``writer.stream.write()`` (which does not wait) raises: the client reads slower than the
#: handler writes, and memory must stay bounded (``await response.send()`` waits instead).
MAX_UNSENT = 8 * 1024 * 1024


class _Sink:
    """The server side of one streaming response, on the host loop. Handlers in a worker
    thread (sync handlers) reach it through ``call_soon_threadsafe``, in order."""

    __slots__ = ("_proto", "_extra", "_loop", "_thread", "_transport", "_queue", "_unsent", "_pump",
                 "started", "shaped", "disconnected", "closed_why", "status", "headers")

    def __init__(self, proto, extra_headers: list, loop: asyncio.AbstractEventLoop):
        self._proto = proto
        self._extra = extra_headers
        self._loop = loop
        self._thread = threading.get_ident()
        self._transport = None
        self._queue: collections.deque[bytes] = collections.deque()
        self._unsent = 0  # bytes in _queue and in the send under way (kept on the loop thread)
        self._pump: asyncio.Task | None = None
        self.started = False
        #: The handler set its status or headers: it streams (out of its trigger's timeout).
        self.shaped = False
        self.disconnected = False
        #: Why writes are refused once ``disconnected``, when not because the client left.
        self.closed_why: str | None = None
        self.status = 200
        self.headers: dict = {}

    def _on_loop(self, fn, *args) -> None:
        if threading.get_ident() == self._thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def start(self, status: int, headers: dict) -> None:
        self.started = True
        self.status, self.headers = status, dict(headers)
        self._on_loop(self._start)

    def _start(self) -> None:
        if self.disconnected:  # let go meanwhile (shutdown cut a sync handler's response short)
            return
        headers = [(name, value) for name, values in self.headers.items() for value in values] + self._extra
        try:
            self._transport = self._proto.response_stream(self.status, headers)
        except Exception:  # the client left before the status line
            self.disconnected = True

    def write(self, data: bytes) -> None:
        if self.disconnected:
            raise ConnectionError(self.closed_why or "response.writer.stream.write(): the client has gone; stop "
                                  "writing (args.response.disconnected says so before a write)")
        if self._unsent > MAX_UNSENT:
            raise ConnectionError(f"response.writer.stream.write(): {self._unsent // 1024 // 1024} MiB written are still "
                                  f"waiting for a client that reads slower than this handler writes; "
                                  f"use await args.response.send(data), which waits for it")
        self._on_loop(self._push, data)

    def _push(self, data: bytes) -> None:
        if self.disconnected or self._transport is None:
            return
        self._queue.append(data)
        self._unsent += len(data)
        if self._pump is None or self._pump.done():
            self._pump = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue and not self.disconnected:
            data = self._queue.popleft()
            try:
                await self._transport.send_bytes(data)
            except Exception:  # the client is gone: drop what is left, the handler may check
                self.disconnected = True
                self._queue.clear()
                self._unsent = 0
            else:
                self._unsent -= len(data)

    async def sent(self) -> None:
        """Until what was written has been handed to the server (``await response.send()``);
        at least one turn of the loop, so a handler that sends in a loop never starves the
        other requests, nor the watch on its own client."""
        pump = self._pump
        if current_library() != "asyncio":  # a trio handler: no waiting on asyncio's tasks
            await trio.lowlevel.checkpoint()
        elif pump is not None and not pump.done():
            await asyncio.shield(pump)  # cancelling the handler must not cancel the pump
        else:
            await asyncio.sleep(0)

    async def finish(self, *, complete: bool = True) -> None:
        """Once the handler returned: start the response if nothing was written, send the rest.
        ``complete=False`` (the handler failed after the response started): what it wrote goes
        out, then the response is aborted, so the client cannot take it for a whole one."""
        await asyncio.sleep(0)  # callbacks a worker thread scheduled before returning run first
        if not self.started:
            self.start(self.status, self.headers)
        while self._pump is not None and not self._pump.done():
            await self._pump
        self.let_go(complete=complete)

    def let_go(self, *, complete: bool) -> None:
        """Be done with the response now, abort it first unless ``complete``: the connection
        then closes without the last chunk (``0\\r\\n\\r\\n``), so the client cannot take what
        it got for the whole answer. Only Granian's ASGI interface can abort
        (``edge.server.asgi``); its RSGI stream has nothing to abort with and ends with the last
        chunk all the same (docs/streams.md)."""
        abort = getattr(self._transport, "abort", None)
        if not complete and abort is not None:
            abort()
        # Granian ends an RSGI response when its transport is freed; drop ours now (a traceback
        # of a failed handler may keep this sink alive for a while, and until then the
        # connection stays open and the server cannot stop).
        self._transport = None
        self.disconnected = True


async def _run_until_gone(proto, sink: "_Sink", invocation, limit: float | None, boundary):
    """Run the invocation; once the response has started (the handler set its status or
    headers, or wrote), a client that goes away cancels it (an endless event stream would
    otherwise run for nobody). Before that a disconnect changes nothing, as on the normal path.

    ``limit`` (the trigger's ``timeout``) bounds the time until the handler starts its
    response (sets its status or headers, or writes): one that has not by then is cancelled and
    TimeoutError raised (the caller answers 504). A response that has started is not under it:
    an event stream may run for hours, and wait long for its first event."""
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    task = asyncio.ensure_future(invocation)
    gone = asyncio.ensure_future(proto.client_disconnect())
    try:
        while not task.done():
            streams = sink.started or sink.shaped
            if streams and gone.done():
                sink.disconnected = True
                await _cancelled(task, boundary)
                return None
            if deadline is not None and not streams and loop.time() >= deadline:
                sink.closed_why = (f"response.writer.stream.write(): the handler did not start its response "
                                   f"within {limit:g} s (its timeout); the client got 504")
                sink.let_go(complete=True)  # what the handler writes now (a thread, its clean-up) reaches nobody
                await _cancelled(task, boundary, TIMEOUT_GRACE)  # the 504 is on time, as on the normal path
                raise TimeoutError
            # (a client gone before the response started: let the handler finish, as on the normal path)
            waiting = {task} if gone.done() else {task, gone}
            timeout = None if deadline is None or streams else max(0.0, deadline - loop.time())
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        result, _ = await task
        return result
    finally:
        gone.cancel()
        if not task.done():
            cancel(task)


#: How long a streaming handler past its timeout gets to stop before its 504 goes out anyway.
TIMEOUT_GRACE = 0.5


async def _cancelled(task: asyncio.Future, boundary, grace: float = CANCEL_GRACE) -> None:
    """Cancel the handler's ``task`` and wait until it has stopped, at most ``grace``
    seconds (what it raises instead was logged by the boundary). One that catches its
    cancellation and goes on is left to run, as on the normal path (``Boundary.detach``): the
    client's 504 must not wait for it."""
    cancel(task)
    boundary.detach(task)  # until it ends: shutdown waits for it, and its outcome is taken
    await asyncio.wait((task,), timeout=grace)


async def _replay(raw: bytes):
    if raw:
        yield raw


async def _live(proto, limit: int):
    size = 0
    async for chunk in proto:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over the {limit}-byte limit (--max-body / EDGE_MAX_BODY)")
        yield chunk


def _extra_headers(app, trace_id: str, origin: str | None) -> list:
    out: list = []
    app.add_answer_headers(out, trace_id, origin)
    return out


async def serve_stream(app, scope, proto, match, req_headers, trace_id: str, origin: str | None):
    """Run a streaming handler. Returns a normal ``(status, headers, body)`` triple when nothing
    was streamed (errors before the first write, a handler that returned a plain result), or
    ``(None, [], status)`` when the response has been sent through ``response_stream``."""
    from .app import _parse_body, _query
    from .bodies import BadBody

    runtime = app.runtime
    step, trigger = match.step, match.trigger
    chunked = req_headers.get("content-length") is None and req_headers.get("transfer-encoding") is not None
    body, raw = None, b""
    if chunked:
        chunks = _live(proto, app.max_body)
    else:
        raw, problem = await app._read_body(proto, req_headers, scope.client, req_headers.get("content-length"))
        if problem is not None:
            return problem
        header = req_headers.get("content-type")
        content_type = (header or "").split(";")[0].strip().lower()
        try:
            body = _parse_body(raw, content_type, match.schema, header)  # (the header: its charset)
        except BadBody as bad:
            return bad.response
        chunks = _replay(raw)
        finished = getattr(proto, "body_finished", None)  # the ASGI adapter: the body is done with
        if finished is not None:
            finished()
    request = ApiRequest(scope.method, scope.path, match.params, _query(scope.query_string),
                         dict(req_headers.items()), body, raw)
    request.request_body = RequestBody(chunks)
    sink = _Sink(proto, _extra_headers(app, trace_id, origin), asyncio.get_running_loop())
    response = ResponseStream(sink)
    args = HttpStreamArgs(request, response)
    failed = False
    try:
        result = await _run_until_gone(proto, sink, runtime.invoke(step, trigger, args, trace_id=trace_id,
                                                                    finish=_as_it_is), trigger.timeout,
                                      runtime.boundary)
    except TimeoutError:  # past the trigger's timeout before the first write: cancelled
        return app.timed_out(step, trigger.timeout, trace_id)
    except Skipped:
        if not sink.started:
            return error_response(422, error="Request condition not met", skipped=True)
        result = None
    except HandlerError as exc:
        if not sink.started:
            if isinstance(exc.original, StorageFull):
                return storage_full(exc.original)  # (said once by the store, no error_id)
            if isinstance(exc.original, RequestBodyError):  # the client's doing: not logged
                return error_response(exc.original.status, detail=str(exc.original))
            return error_response(500, error_id=exc.error_id)
        # Already logged with its error_id (a full disk: said once by the store). The status
        # went out with the first write and cannot change: what is left is to cut the
        # response off, not to end it as if whole.
        result, failed = None, True
    except asyncio.CancelledError:  # shutdown ran out of grace: the stream did not finish either
        sink.let_go(complete=False)
        raise
    if not sink.started and result is not None:
        try:
            return build_response(result)
        except BadResult as exc:
            error_id = new_id(6)
            runtime.tracer.exception(f"{step.name}: {exc} (error_id {error_id})", exc, trace_id=trace_id,
                                     step=step.name)
            return error_response(500, error_id=error_id)
    if not sink.started:
        sink.status, sink.headers = response._status, response._headers
    await sink.finish(complete=not failed)
    return None, [], sink.status


def _as_it_is(result):
    """``finish`` for a streaming handler: it answered through its own stream; the result stays."""
    return result
