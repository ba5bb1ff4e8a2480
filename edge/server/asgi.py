"""Serve the RSGI-shaped :class:`~edge.server.app.EdgeApp` through Granian's ASGI interface.

Why this exists: Motia's stream clients send their token as WebSocket subprotocols
(``["Authorization", token]``) and browsers and node's ``ws`` refuse a handshake whose response
does not echo one of them. Granian's RSGI ``accept()`` takes no subprotocol (granian 2.8: the
upgrade response gets no headers), its ASGI ``websocket.accept`` does. The price is on every
HTTP request (the ASGI message dicts): measured in docs/streams.md. Selected with
``EDGE_SERVER_INTERFACE=asgi``; RSGI stays the default.

Only the few members EdgeApp and the stream WebSocket use are adapted.
"""

from __future__ import annotations

import asyncio

from .bodies import BodyEndedEarly
from .ws import CLOSE_GRACE

__all__ = ["wrap"]


class _Headers:
    """RSGI-like headers: ``get``, ``get_all``, ``items``, ``keys``, ``in`` over lower-case
    names (``get``: the first value wins, as under RSGI)."""

    __slots__ = ("_values", "_more")

    def __init__(self, raw):
        values: dict[str, str] = {}
        more: dict[str, list[str]] | None = None  # the second and later values of a repeated name
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            if key in values:
                if more is None:
                    more = {}
                more.setdefault(key, []).append(text)
            else:
                values[key] = text
        self._values, self._more = values, more

    def get(self, name, default=None):
        return self._values.get(name, default)

    def get_all(self, name) -> list[str]:
        first = self._values.get(name)
        if first is None:
            return []
        return [first, *self._more.get(name, ())] if self._more else [first]

    def items(self):
        return self._values.items()

    def keys(self):
        return self._values.keys()

    def __contains__(self, name) -> bool:
        return name in self._values


class _Scope:
    __slots__ = ("proto", "method", "path", "query_string", "headers", "client")

    def __init__(self, scope: dict):
        self.proto = "ws" if scope["type"] == "websocket" else "http"
        self.method = scope.get("method", "GET")
        self.path = scope["path"]
        self.query_string = scope.get("query_string", b"").decode("latin-1")
        self.headers = _Headers(scope.get("headers", ()))
        client = scope.get("client")
        self.client = f"{client[0]}:{client[1]}" if client else ""


class _StreamTransport:
    """RSGI's ``response_stream`` transport over ASGI: the start message goes out with the
    first chunk (or at the end); :func:`wrap` sends the closing empty body, unless the stream
    was aborted: then the app returns without it, and Granian cuts the connection off."""

    __slots__ = ("_send", "_start", "aborted")

    def __init__(self, send, status, headers):
        self._send = send
        self._start = {"type": "http.response.start", "status": status,
                       "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]}
        self.aborted = False

    def abort(self) -> None:
        """The response will not be finished (its handler failed part-way): see :func:`wrap`."""
        self.aborted = True

    async def _started(self) -> None:
        if self._start is not None:
            start, self._start = self._start, None
            await self._send(start)

    async def send_bytes(self, data: bytes) -> None:
        await self._started()
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def send_str(self, data: str) -> None:
        await self.send_bytes(data.encode())

    async def end(self) -> None:
        await self._started()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class _HttpProto:
    """``await proto()`` (the whole body), ``async for chunk in proto``, ``response_bytes``,
    ``response_stream`` (streaming handlers, edge.server.streaming)."""

    __slots__ = ("_receive", "_send", "response", "stream", "_body_done", "answered")

    def __init__(self, receive, send=None):
        self._receive = receive
        self._send = send
        self.response = None
        self.answered = False  # by answer_now (shutdown's 503): the handler's answer goes nowhere
        self.stream: _StreamTransport | None = None
        self._body_done: asyncio.Event | None = None  # streaming handlers only

    async def _chunks(self):
        try:
            while True:
                message = await self._receive()
                if message["type"] != "http.request":  # http.disconnect before the last part
                    raise BodyEndedEarly("the client went away before the end of the request body")
                body = message.get("body", b"")
                if body:
                    yield body
                if not message.get("more_body"):
                    return
        finally:
            self.body_finished()

    def body_finished(self) -> None:
        """Nobody reads the request body from here on (so :meth:`client_disconnect` may)."""
        if self._body_done is None:
            self._body_done = asyncio.Event()
        self._body_done.set()

    async def client_disconnect(self) -> None:
        """Return once the client has gone (RSGI's ``client_disconnect``); waits until the
        request body is no longer being read, since both come through ``receive``."""
        if self._body_done is None:
            self._body_done = asyncio.Event()
        await self._body_done.wait()
        while (await self._receive())["type"] != "http.disconnect":
            pass

    def __aiter__(self):
        return self._chunks()

    async def __call__(self) -> bytes:
        return b"".join([chunk async for chunk in self._chunks()])

    def response_bytes(self, status, headers, body) -> None:
        self.response = (status, headers, body)

    def answer_now(self, status, headers, body) -> None:
        """Answer while the handler still runs (shutdown's 503 for a handler that went on after
        its cancellation: under RSGI ``response_bytes`` does that, here the answer would wait
        for the handler to return, and Granian's stop for the answer)."""
        if self.answered or self.stream is not None:
            return  # answered already, or a stream under way: its connection is cut at the stop
        self.answered = True
        task = asyncio.ensure_future(_respond(self._send, status, headers, body))
        task.add_done_callback(_consumed)

    def response_stream(self, status, headers) -> _StreamTransport:
        self.stream = _StreamTransport(self._send, status, headers)
        return self.stream


class _Message:
    __slots__ = ("kind", "data")

    def __init__(self, kind: int, data):
        self.kind = kind  # 0 close, 1 bytes, 2 text: as RSGI
        self.data = data


class _WsTransport:
    __slots__ = ("_receive", "_send")

    def __init__(self, receive, send):
        self._receive = receive
        self._send = send

    async def receive(self) -> _Message:
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            return _Message(2, text) if text is not None else _Message(1, message.get("bytes") or b"")
        return _Message(0, None)

    async def send_str(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})


class _WsProto:
    """RSGI's WebSocket protocol over ASGI, plus the subprotocol RSGI lacks."""

    __slots__ = ("_receive", "_send", "_closed", "_closing")
    accepts_subprotocol = True

    def __init__(self, receive, send):
        self._receive = receive
        self._send = send
        self._closed = False
        self._closing = None

    async def accept(self, subprotocol: str | None = None) -> _WsTransport:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise ConnectionError("the client left before the handshake")
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        return _WsTransport(self._receive, self._send)

    def close(self, status: int | None = None) -> None:
        """Start sending the close frame (once); :meth:`finish` waits for it.

        Granian's ``send`` returns its own awaitable, not a coroutine (``create_task`` refused
        it, so nothing waited for the close). Its close waits for the pending ``receive()``
        to let go of the socket: the caller cancels that receive, then awaits :meth:`finish`.
        """
        if self._closed:
            return
        self._closed = True
        self._closing = asyncio.ensure_future(self._send({"type": "websocket.close", "code": status or 1000}))
        self._closing.add_done_callback(_consumed)  # a peer gone meanwhile is no error to report

    async def finish(self) -> None:
        """Until the close frame is out (at most CLOSE_GRACE seconds: a peer that never reads)."""
        if self._closing is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._closing), CLOSE_GRACE)
            except Exception:  # the peer is gone already, or does not read
                pass


def _consumed(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


async def _respond(send, status, headers, body) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]})
    await send({"type": "http.response.body", "body": body})


def wrap(app):
    """An ASGI callable serving ``app`` (which speaks RSGI's ``__rsgi__(scope, proto)``)."""
    rsgi = app.__rsgi__

    async def asgi(scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            proto = _HttpProto(receive, send)
            await rsgi(_Scope(scope), proto)
            if proto.stream is not None:
                # Aborted: no closing `more_body: False`. Granian 2.8.9 then closes the connection
                # without the last chunk (0\r\n\r\n), as it does when the app raises; returning
                # keeps its log free of a second traceback (edge logged the handler's already).
                if not proto.stream.aborted:
                    await proto.stream.end()
                return
            if not proto.answered:
                await _respond(send, *proto.response)
        elif kind == "websocket":
            proto = _WsProto(receive, send)
            try:
                await rsgi(_Scope(scope), proto)
            finally:
                await proto.finish()

    return asgi
