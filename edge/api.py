"""What HTTP handlers receive and may return: ``ApiRequest``, ``ApiResponse``, and the streaming
pair (``HttpStreamArgs`` with a ``ResponseStream``) for handlers that answer piece by piece.

Both Motia dialects read the same request: 1.0 code uses attributes (``req.body``,
``req.path_params``), 0.x code treats it as a plain mutable dict (``req["body"]``,
``req.get("pathParams")``, and middleware may write keys such as ``req["user"] = ...`` for the
handler to read). Keys with a meaning (``body``, ``pathParams``, ...) and their attributes are
the same value; other keys live beside them.

``ApiRequest[Body]`` / ``ApiResponse[Out]`` are subscriptable, as Motia's generics are, so
annotations evaluated at import (``ApiRequest[Any]``) work.
"""

from __future__ import annotations

import re

import types
from collections.abc import MutableMapping
from typing import Any

from .errors import BadResult

__all__ = ["ApiRequest", "ApiResponse", "HttpStreamArgs", "RequestBody", "ResponseStream", "check_headers"]

#: dict key -> attribute. Keys are Motia 0.x's (camelCase) and 1.0's (snake_case) spellings.
_DICT_KEYS = {
    "body": "body",
    "pathParams": "path_params",
    "path_params": "path_params",
    "queryParams": "query_params",
    "query_params": "query_params",
    "headers": "headers",
    "rawBody": "raw_body",
    "raw_body": "raw_body",
    "method": "method",
    "path": "path",
}
#: What ``keys()`` lists first: the keys of Motia 0.x's request dict.
_LISTED = ("body", "pathParams", "queryParams", "headers", "rawBody")


class ApiRequest(MutableMapping):
    """An HTTP request: attributes, or dict access with Motia 0.x keys (``req["body"]``).

    All arguments are optional (tests and Motia code build requests by keyword:
    ``ApiRequest(body={...}, path_params={"id": "1"})``).
    """

    __slots__ = ("method", "path", "path_params", "query_params", "_headers", "body", "raw_body",
                 "_extra", "request_body")
    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, method="GET", path="/", path_params=None, query_params=None, headers=None,
                 body=None, raw_body=b""):
        self.method = method
        self.path = path
        self.path_params = {} if path_params is None else path_params
        self.query_params = {} if query_params is None else query_params
        self._headers = {} if headers is None else headers  # a dict, or the server's header map (made a dict when read)
        self.body = body
        self.raw_body = raw_body
        #: keys written by middleware (``req["user"] = ...``); None until the first one
        self._extra: dict | None = None
        #: the body as a stream (``request_body.stream``), for streaming handlers only
        self.request_body: RequestBody | None = None

    @property
    def headers(self) -> dict:
        """Request headers, lower-case names -> values."""
        headers = self._headers
        if type(headers) is not dict:
            headers = self._headers = dict(headers.items())
        return headers

    @headers.setter
    def headers(self, value: dict) -> None:
        self._headers = value

    def header(self, name: str) -> str | None:
        """One request header (lower-case ``name``), without copying them all as ``headers`` does."""
        return self._headers.get(name)

    def model_dump(self, **_: Any) -> dict:
        """The request as a dict (the name Motia's pydantic ``ApiRequest`` has); what a log
        line shows for ``ctx.logger.info("...", req)``, its credentials left out."""
        return {"method": self.method, "path": self.path, "path_params": self.path_params,
                "query_params": self.query_params, "headers": self.headers, "body": self.body}

    @property
    def pathParams(self) -> dict:
        return self.path_params

    @property
    def queryParams(self) -> dict:
        return self.query_params

    @property
    def rawBody(self) -> bytes:
        return self.raw_body

    # -- the dict face (Motia 0.x) ------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        name = _DICT_KEYS.get(key)
        if name is not None:
            return getattr(self, name)
        if self._extra is not None and key in self._extra:
            return self._extra[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        name = _DICT_KEYS.get(key)
        if name is not None:
            setattr(self, name, value)
        else:
            if self._extra is None:
                self._extra = {}
            self._extra[key] = value

    def __delitem__(self, key: str) -> None:
        if key in _DICT_KEYS:
            raise KeyError(f"{key!r} is part of every request and cannot be removed; set it to None instead")
        if self._extra is None or key not in self._extra:
            raise KeyError(key)
        del self._extra[key]

    def get(self, key: str, default: Any = None) -> Any:
        name = _DICT_KEYS.get(key)
        if name is not None:
            return getattr(self, name)
        if self._extra is not None:
            return self._extra.get(key, default)
        return default

    def __contains__(self, key: object) -> bool:
        return key in _DICT_KEYS or (self._extra is not None and key in self._extra)

    def __iter__(self):
        yield from _LISTED
        if self._extra:
            yield from list(self._extra)

    def __len__(self) -> int:
        return len(_LISTED) + (len(self._extra) if self._extra else 0)

    def keys(self):
        return list(self)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not attributes: a key middleware wrote (req["user"]).
        extra = object.__getattribute__(self, "_extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"'ApiRequest' object has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"ApiRequest({self.method} {self.path})"


class ApiResponse:
    """An HTTP response a handler may return instead of ``{"status", "body", "headers"}``."""

    __slots__ = ("status", "body", "headers")
    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, status: int = 200, body: Any = None, headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}

    @property
    def status_code(self) -> int:
        return self.status

    def model_dump(self, **_: Any) -> dict:
        """The response as a dict (the name Motia's pydantic ``ApiResponse`` has)."""
        return {"status": self.status, "body": self.body, "headers": dict(self.headers)}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiResponse):
            return NotImplemented
        return (self.status, self.body, self.headers) == (other.status, other.body, other.headers)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ApiResponse({self.status})"


# -- streaming responses ----------------------------------------------------------------------
# A handler whose first parameter is annotated ``HttpStreamArgs`` (Motia 1.0: ``MotiaHttpArgs``)
# gets ``args.request`` and ``args.response`` and writes the answer itself (server-sent
# events, long downloads). The server side lives in edge/server/streaming.py: it hands these
# objects a sink with ``start(status, headers)``, ``write(bytes)`` and ``closed``.


#: Headers that frame the message on the wire: Granian writes them from the body edge hands
#: it. A handler's own (a proxy step copying an upstream response's ``content-length`` after
#: the body was decompressed) would make the client wait for bytes that never come, or read
#: the rest of the body as the next response: they are dropped.
#: ``x-trace-id`` is edge's: it names the trace the logs and the console use.
DROPPED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
                     "trailer", "proxy-connection", "x-trace-id"})
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
#: What a header value may not hold (RFC 9110 5.5): control characters other than a tab.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def check_headers(headers: Any) -> list[tuple[str, str]]:
    """A handler's ``{name: value}`` headers as the response's ``[(name, value)]``: names in
    lower case, a list value as one header per item (``set-cookie``), :data:`DROPPED` dropped.

    Raises:
        BadResult: not a dict, a name that is no header name, a value with a line break, a
            control character or no UTF-8 form.
    """
    if not isinstance(headers, dict):
        raise BadResult(f"handler returned headers of type {type(headers).__name__}; expected a dict of name -> value")
    out = []
    for name, value in headers.items():
        name = str(name).lower()
        if not name or not _TOKEN.issuperset(name):
            raise BadResult(f"handler returned a header name that is no header name: {name!r}")
        if name in DROPPED:
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if type(item) is not str:
                if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                    raise BadResult(f"handler returned a header value of type {type(item).__name__} for {name!r}; "
                                    "expected a str (or a number)")
                item = str(item)
            if "\n" in item or "\r" in item:
                raise BadResult(f"handler returned a header value with a line break: {item!r}")
            if _CONTROL.search(item):  # Granian dropped such a header without a word
                raise BadResult(f"handler returned a header value with a control character: {item!r}")
            if not item.isascii():  # a lone surrogate has no UTF-8: Granian refused the whole answer
                try:
                    item.encode()
                except UnicodeEncodeError as exc:
                    raise BadResult(f"handler returned a header value that is not valid text for {name!r}: "
                                    f"{exc.object[exc.start:exc.end]!r} at character {exc.start} has no UTF-8 "
                                    "form") from None
            out.append((name, item))
    return out


class _Writer:
    """``response.writer`` (and ``response.writer.stream``): ``write(data)`` queues bytes for
    the client in order; it does not block (the server sends them in the background)."""

    __slots__ = ("_response",)

    def __init__(self, response: "ResponseStream"):
        self._response = response

    @property
    def stream(self) -> "_Writer":
        return self

    def write(self, data: bytes | str) -> None:
        self._response._write(data)

    def close(self) -> None:
        self._response.close()


class ResponseStream:
    """``args.response``: ``await status(200)``, ``await headers({...})``, then
    ``writer.stream.write(b"...")`` as often as needed, and ``close()``.

    The status line and headers go out with the first write (or when the handler returns).
    The response ends when the handler returns; ``close()`` refuses further writes.
    """

    __slots__ = ("_sink", "_status", "_headers", "_closed", "writer")

    def __init__(self, sink):
        self._sink = sink
        self._status = 200
        self._headers: dict[str, list[str]] = {}  # checked (check_headers): name -> values
        self._closed = False
        self.writer = _Writer(self)

    def _check_open(self, what: str) -> None:
        if self._sink.started:
            raise RuntimeError(f"response.{what}(): the response has started (the first write sends "
                               f"the status and headers); call status() and headers() before writing")

    async def status(self, status_code: int) -> None:
        self._check_open("status")
        if isinstance(status_code, bool) or not isinstance(status_code, int) or not 200 <= status_code <= 599:
            raise ValueError(f"response.status(): expected an HTTP status code (200-599), got {status_code!r}")
        self._status = status_code
        self._sink.shaped = True

    async def headers(self, headers: dict) -> None:
        self._check_open("headers")
        if not isinstance(headers, dict):
            raise TypeError(f"response.headers(): expected a dict of name -> value, got {type(headers).__name__}")
        checked = check_headers(headers)  # a bad name or value fails the handler here
        for name in {str(k).lower() for k in headers}:  # a name given again replaces its values
            self._headers.pop(name, None)
        for name, value in checked:  # name -> the values as sent
            self._headers.setdefault(name, []).append(value)
        self._sink.shaped = True

    def _write(self, data: bytes | str) -> None:
        if self._closed:
            raise RuntimeError("response.writer.stream.write(): the response was closed with response.close()")
        if isinstance(data, str):
            data = data.encode()
        elif isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif not isinstance(data, bytes):
            raise TypeError(f"response.writer.stream.write(): expected bytes or str, got {type(data).__name__}")
        if not self._sink.started:
            self._sink.start(self._status, self._headers)
        if data:
            self._sink.write(data)

    async def send(self, data: bytes | str) -> None:
        """Write ``data`` and wait until it is handed to the server (edge's own spelling of
        ``writer.stream.write``, which does not wait)."""
        self._write(data)
        await self._sink.sent()

    def close(self) -> None:
        self._closed = True

    @property
    def started(self) -> bool:
        return self._sink.started

    @property
    def disconnected(self) -> bool:
        """True once the client has gone (later writes are dropped)."""
        return self._sink.disconnected


class RequestBody:
    """``request.request_body``: ``async for chunk in request_body.stream`` yields the body's
    bytes as they arrive; ``await read()`` returns all of it."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks):
        self._chunks = chunks  # an async iterator of bytes, used once

    @property
    def stream(self):
        return self._chunks

    def __aiter__(self):
        return self._chunks.__aiter__()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self._chunks])


class HttpStreamArgs:
    """What a streaming handler receives: ``request`` (an :class:`ApiRequest` with
    ``request_body``) and ``response`` (a :class:`ResponseStream`). The request's fields are
    also readable directly (``args.body``, ``args.path_params``, ``args.get("body")``)."""

    __slots__ = ("request", "response")
    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, request: ApiRequest, response: ResponseStream):
        self.request = request
        self.response = response

    def __getattr__(self, name: str) -> Any:
        # ``args.body``, ``args.path_params``, ``args.headers``, ``args.request_body``, ...
        return getattr(self.request, name)

    def get(self, key: str, default: Any = None) -> Any:
        if key in ("request", "response"):
            return getattr(self, key)
        if key == "request_body":
            return self.request.request_body
        return self.request.get(key, default)

    def __getitem__(self, key: str) -> Any:
        if key in ("request", "response", "request_body"):
            return self.get(key)
        return self.request[key]

    def __repr__(self) -> str:
        return f"HttpStreamArgs({self.request.method} {self.request.path})"
