"""The RSGI application: every request is handled on the asyncio host loop, where Granian
calls it and where handlers run — no hop into another loop on the HTTP path.

Routing, body limits, JSON parsing and schema validation come first (a rejected request never
reaches a handler); the handler then runs inside the boundary (``edge._boundary``), which also
builds the response, so a result that cannot be sent is that invocation's error. ``__rsgi__``
is the outermost guard: whatever happens below it, the client gets an answer and the server
goes on serving.
"""

from __future__ import annotations

import asyncio
import re
from time import perf_counter
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

import msgspec

from .._format import access_line
from .._metrics import RequestMetrics
from ..api import ApiRequest
from ..errors import EdgeError, MalformedJSON, SchemaError, StorageFull
from .._json import JSONTooDeep, decode as decode_json  # faults hook (issue 10 item 6)
from .._boundary import cancel
from ..runtime import HandlerError, Runtime, Skipped
from ..tracing import new_id
from .access import AccessPolicy
from .bodies import BadBody, charset_codec, charset_of, decode_text
from .bodies import ended_early, inflated  # faults hook (issue 10 item 5)
from .intake import BodyIntake
from .forms import FORM, parse_form
from .responses import JSON, build_response, error_response, json_body, storage_full
from .routing import Router

__all__ = ["EdgeApp", "Endpoint"]

#: asyncio's table of running tasks by loop (3.11; None where it is gone): read directly, since
#: asyncio.current_task() asks for the running loop, which costs a getpid(2) on 3.11.
_current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_TRACE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

#: ``async fn(app, request) -> (status, body)`` or ``(status, body, headers)``: the runtime's
#: own ``/__edge/...`` endpoints.
Endpoint = Callable[["EdgeApp", ApiRequest], Awaitable[tuple]]


class EdgeApp:
    """The HTTP app of one runtime. Built by the server with every endpoint it serves."""

    def __init__(self, runtime: Runtime, settings, *, endpoints: dict | None = None, websocket=None,
                 access: AccessPolicy | None = None):
        self.runtime = runtime
        self.settings = settings
        #: Who may use /__edge/... (hook, issue 11: edge/server/access.py).
        self.access = access if access is not None else AccessPolicy(settings)
        self.max_body = settings.max_body
        #: The bodies being received: their time limit and memory budget (edge.server.intake).
        self.intake = BodyIntake(settings.idle_timeout, settings.max_body)
        self.router = Router()
        for step in runtime.steps.values():
            for trigger in step.triggers:
                if trigger.type == "http":
                    self.router.add(trigger.method, trigger.path, step, trigger,
                                    runtime.schemas.get((step.name, trigger.index)))
        #: (method, path) -> Endpoint.
        self.endpoints: dict[tuple[str, str], Endpoint] = dict(endpoints or {})
        #: The stream WebSockets (``edge.server.ws.StreamSockets``), or None.
        self.websocket = websocket
        #: "rsgi" or "asgi": the Granian interface the server picked (health shows it).
        self.interface = "rsgi"
        #: The OpenAPI document, built on first request (the steps do not change while serving).
        self.openapi: dict | None = None
        #: WebSocket callbacks still running: Granian sends a socket's close frame only once its
        #: callback has returned, so shutdown waits for this to reach 0 before stopping Granian.
        self.websockets_open = 0
        self.websockets_served = 0
        self.inflight = 0
        self._idle: asyncio.Future | None = None  # created by wait_idle (shutdown) only
        #: The requests in flight: their task -> their proto (shutdown answers those that outlive it).
        self._tasks: dict[asyncio.Task, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop requests arrive on (cached)
        self.cors = tuple(settings.cors_origins)
        #: Hook (issue 14): requests by route and status for GET /__edge/metrics.
        self.metrics = RequestMetrics(self)
        #: Served by `edge dev`, which restarts on every change (edge.server.bridge._interface).
        self.dev = settings.mode == "dev"
        # [cli hook] `edge dev` prints one readable access line per request (edge._format).
        self.access_log = self.dev

    # -- entry point ----------------------------------------------------------------------

    async def __rsgi__(self, scope, proto) -> None:
        if scope.proto == "ws":
            if self.websocket is None or self.runtime.stopping:
                proto.close(1013 if self.runtime.stopping else 1008)
                return
            self.websockets_open += 1
            self.websockets_served += 1
            try:
                await self.websocket(scope, proto)
            finally:
                self.websockets_open -= 1
            return
        started = perf_counter()
        method, path = scope.method, scope.path  # read once: each read builds a new str in Granian
        self.inflight += 1
        task = self._current_task()
        self._tasks[task] = proto
        try:
            req_headers = scope.headers
            trace_id = _trace_id(req_headers)
            origin = req_headers.get("origin")
            if self.runtime.stopping:
                status, headers, body = error_response(503, detail="edge is shutting down; retry shortly")
            elif origin is not None and method == "OPTIONS" and req_headers.get("access-control-request-method") \
                    and (preflight := self._preflight(path, req_headers, origin)) is not None:
                status, headers, body = preflight
            else:
                status, headers, body = await self._dispatch(scope, proto, req_headers, method, path, trace_id, task)
            headers.append(("x-trace-id", trace_id))  # add_answer_headers, its common case inline
            if origin is not None:
                self.add_cors_headers(headers, origin)
        except asyncio.CancelledError:  # shutdown ran out of grace
            status, headers, body = error_response(503, detail="edge stopped before the handler finished; retry")
            if task is not None:
                task.uncancel()
        except Exception as exc:  # a bug in edge itself: still answer, and say where to look
            error_id = new_id(6)
            self.runtime.tracer.exception(f"edge failed on {method} {path} (error_id {error_id})", exc)
            status, headers, body = error_response(500, error_id=error_id)
            headers.append(("x-trace-id", error_id))
            trace_id = error_id
        finally:
            self._tasks.pop(task, None)
            self.inflight -= 1
            if self.inflight == 0 and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
        streamed = status is None  # hook (issue 12): a streaming handler answered itself (streaming.py)
        if streamed:
            status = body  # ... and its status comes in place of the body
        self.metrics.observe(method, path, status, perf_counter() - started)  # hook (issue 14)
        if streamed:
            return
        if method == "HEAD":
            body = b""
        try:
            proto.response_bytes(status, headers, body)
        except Exception:  # the client is gone (or the headers are unusable): nothing to answer
            pass
        # [cli hook] after the step's own lines, with the request's trace id; not for the
        # runtime's own endpoints (`edge logs --follow` polling would log itself forever)
        if self.access_log and not path.startswith("/__edge/"):
            path = f"{path}?{scope.query_string}" if scope.query_string else path
            self.runtime.tracer.log("info", access_line(method, path, status,
                                                        (perf_counter() - started) * 1000), trace_id=trace_id)

    async def _dispatch(self, scope, proto, req_headers, method, path, trace_id, task=None):
        endpoint = match = None
        if path.startswith("/__edge/"):
            endpoint = self.endpoints.get((method, path))
            # The console's page and files hold no data: with EDGE_TOKEN set they load without it,
            # so the page can show its sign-in form. Everything else goes through the access check.
            if endpoint is not None and self.access.token_set and getattr(endpoint, "public", False):
                refused = self.access.host_refusal(req_headers)  # the files, to a name of this machine only
            else:
                refused = self.access.check(method, path, scope.client, req_headers)
            if refused is not None:
                return refused
            if endpoint is None:
                allowed = self._endpoint_methods(path)
                return _not_allowed(allowed) if allowed else error_response(404, path=path)
        else:
            match, allowed = self.router.match(method, path)
            if match is None:
                if allowed:
                    if method == "OPTIONS":
                        return 204, [("allow", ", ".join(allowed + ["OPTIONS"]))], b""
                    return _not_allowed(allowed)
                return error_response(404, path=path)

        # -- hook (issue 12, Motia 1.0 streaming responses): handlers that take HttpStreamArgs
        #    (MotiaHttpArgs) write their own answer through RSGI's response_stream. Only steps
        #    discovery marked go there; the normal path below pays this one attribute check.
        if match is not None and match.step.http_stream:
            from .streaming import serve_stream

            return await serve_stream(self, scope, proto, match, req_headers, trace_id, req_headers.get("origin"))
        # -- end of hook
        declared = req_headers.get("content-length")
        if declared is None and req_headers.get("transfer-encoding") is None:
            raw = b""  # HTTP/1.1: no Content-Length and no Transfer-Encoding, no body
        else:
            raw, problem = await self._read_body(proto, req_headers, scope.client, declared, task)
            if problem is not None:
                return problem
        schema = match.schema if match else None
        if raw or schema is not None:
            header = req_headers.get("content-type")
            content_type = (header or "").split(";")[0].strip().lower()
            if endpoint is not None and raw and not _is_json(content_type):
                return _takes_json(method, path, content_type)
            try:
                body = _parse_body(raw, content_type, schema, header)
            except BadBody as bad:
                return bad.response
        else:
            body = None
        query_string = scope.query_string
        query = _query(query_string) if query_string else {}
        # Headers stay Granian's until a handler reads them (a copy costs more than the rest).
        request = ApiRequest(method, path, match.params if match else None, query, req_headers, body, raw)
        if endpoint is not None:
            return await self._run_endpoint(endpoint, request)

        step, trigger = match.step, match.trigger
        runtime = self.runtime
        limit = trigger.timeout
        try:
            if step.runtime == "asyncio" and limit is None:  # on the loop it runs on: the boundary itself
                response, _ = await runtime.boundary.run(step, trigger, request, trace_id, None, None, build_response)
            else:
                response, _ = await runtime.invoke(step, trigger, request, trace_id=trace_id, finish=build_response,
                                                   limit=limit)
            return response
        except TimeoutError:  # past the trigger's timeout: cancelled (a sync handler's thread runs on)
            return self.timed_out(step, limit, trace_id)
        except Skipped:
            return error_response(422, error="Request condition not met", skipped=True)
        except HandlerError as exc:
            if isinstance(exc.original, StorageFull):
                return storage_full(exc.original)  # (said once by the store, no error_id)
            return error_response(500, error_id=exc.error_id)

    def timed_out(self, step, limit: float, trace_id: str):
        """The 504 of a handler that outlived its HTTP trigger's ``timeout``, said in the log."""
        error_id = new_id(6)
        detail = f"the handler did not answer within {limit:g} s (its timeout)"
        sync = step.call is not None and not step.call.is_async
        fate = "its thread cannot be stopped and finishes in the background" if sync else "it was cancelled"
        self.runtime.tracer.log("error", f"{step.name}: TimeoutError: {detail}; {fate} and the client got "
                                         f"504 (error_id {error_id})", trace_id=trace_id, step=step.name,
                                flows=step.flows, data={"error_id": error_id})
        return error_response(504, detail=detail, error_id=error_id)

    # -- request pieces -------------------------------------------------------------------

    async def _read_body(self, proto, headers, client: str, declared: str | None, task=None):
        """The body (within ``--max-body``, in time, within the budget of bodies being
        received: ``edge.server.intake``), or ``(b"", error response)``. ``declared``: the
        Content-Length header; ``task``: the request's (looked up when not given)."""
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                return b"", error_response(400, detail=f"bad Content-Length header: {declared!r}")
            if length > self.max_body:
                return b"", _too_large(self.max_body)
            if length == 0:
                return b"", None
        elif headers.get("transfer-encoding") is None:
            return b"", None  # HTTP/1.1: no Content-Length and no Transfer-Encoding, no body
        else:
            length = None  # chunked: a body cut off is a 400 (edge/server/bodies.py)
        intake = self.intake
        size = self.max_body if length is None else length
        if task is None:
            task = self._current_task()
        refused = intake.begin(task, client, size)
        if refused is not None:
            return b"", refused
        try:
            if length is not None:  # declared and within the limit: one read (Granian enforces the length)
                raw, problem = await proto(), None
            else:
                raw, problem = await intake.read_chunked(proto, lambda: _too_large(self.max_body))
        except asyncio.CancelledError:
            if not intake.late(task):
                raise
            return b"", intake.timed_out(size, length is None)
        except Exception:  # the body broke off: RSGIProtocolClosed (RSGI), BodyEndedEarly (ASGI)
            return b"", ended_early()  # faults hook (issue 10 item 5): short body -> 400
        finally:
            intake.end(task, client, size)
        coding = headers.get("content-encoding")
        if coding is None or not raw or problem is not None:
            return raw, problem
        return inflated(raw, coding, self.max_body)  # as body-parser did for Motia 0.x

    def _current_task(self) -> asyncio.Task | None:
        """The request's task, read from asyncio's table (one EdgeApp is served by one loop at a
        time: edge.testing builds one per App; the first request finds the loop)."""
        task = _current_tasks.get(self._loop) if _current_tasks is not None else None
        if task is None:
            task = asyncio.current_task()
            self._loop = task.get_loop() if task is not None else None
        return task

    def _preflight(self, path, headers, origin):
        """A CORS preflight's answer; None when a step declares OPTIONS on ``path`` (it answers
        its preflights itself)."""
        if path.startswith("/__edge/"):
            misdirected = self.access.host_refusal(headers)  # a foreign Host learns not even the methods
            if misdirected is not None:
                return misdirected
            allowed = self._endpoint_methods(path)
        else:
            allowed = self.router.allowed(path)
            if "OPTIONS" in allowed:
                return None
        if not allowed:
            return error_response(404, path=path)
        methods = ", ".join(allowed + ["OPTIONS"])
        out = [("allow", methods)]
        if origin is not None and self._cors_allows(origin):
            out += [
                ("access-control-allow-methods", methods),
                ("access-control-allow-headers", headers.get("access-control-request-headers") or "content-type"),
                ("access-control-max-age", "600"),
            ]
        return 204, out, b""

    def add_answer_headers(self, headers: list, trace_id: str, origin: str | None) -> None:
        """What every answer carries: its trace id, and the CORS headers an allowed origin gets."""
        headers.append(("x-trace-id", trace_id))
        if origin is not None:
            self.add_cors_headers(headers, origin)

    def add_cors_headers(self, headers: list, origin: str) -> None:
        if self._cors_allows(origin):
            headers.append(("access-control-allow-origin", "*" if "*" in self.cors else origin))
            headers.append(("access-control-expose-headers", "x-trace-id"))
            if "*" not in self.cors:
                headers.append(("vary", "origin"))

    def _endpoint_methods(self, path: str) -> list[str]:
        return sorted(m for (m, p) in self.endpoints if p == path)

    def _cors_allows(self, origin: str) -> bool:
        return "*" in self.cors or origin in self.cors

    # -- running ---------------------------------------------------------------------------

    async def _run_endpoint(self, endpoint, request):
        """The runtime's own endpoints: bad input is a 400 saying why; anything else a 500."""
        try:
            result = await endpoint(self, request)
        except SchemaError as exc:
            return error_response(400, error=str(exc), errors=exc.errors)
        except StorageFull as exc:
            return storage_full(exc)
        except EdgeError as exc:
            return error_response(400, detail=str(exc))
        except Exception as exc:
            error_id = new_id(6)
            self.runtime.tracer.exception(
                f"edge endpoint {request.method} {request.path} failed: {type(exc).__name__} (error_id {error_id})", exc)
            return error_response(500, error_id=error_id)
        status, body = result[0], result[1]
        headers = list(result[2]) if len(result) > 2 else []
        has_type = any(k.lower() == "content-type" for k, _ in headers)
        if isinstance(body, (bytes, str)):
            if not has_type:
                headers.append(("content-type", "text/plain; charset=utf-8"))
            return status, headers, body if isinstance(body, bytes) else body.encode()
        try:
            payload = json_body(body)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EdgeError(f"the answer cannot be encoded as JSON: {exc}") from None
        if not has_type:
            headers.append(("content-type", JSON))
        return status, headers, payload

    # -- shutdown -------------------------------------------------------------------------

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (True), or ``timeout`` seconds (False)."""
        if not self.inflight:
            return True
        self._idle = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._idle), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def cancel_inflight(self) -> None:
        for task in list(self._tasks):
            cancel(task)

    def answer_stragglers(self) -> int:
        """Shutdown, after the grace and the cancel: answer ``503`` for the requests whose
        handler still runs (it caught its cancellation and went on), since Granian would wait
        for their answers for good; how many. What such a handler answers later goes nowhere."""
        status, headers, body = error_response(503, detail="edge stopped before the handler finished; retry")
        for proto in list(self._tasks.values()):
            try:  # (ASGI's proto answers at once only through answer_now)
                getattr(proto, "answer_now", proto.response_bytes)(status, list(headers), body)
            except Exception:  # the client is gone
                pass
        return len(self._tasks)


def _is_json(content_type: str) -> bool:
    return content_type in ("application/json", "") or content_type.endswith("+json")


def _parse_body(raw: bytes, content_type: str, schema, header: str | None = None):
    """The request body as the handler sees it; raises BadBody with the error response.

    ``content_type`` is the media type alone, lower-case; ``header`` the whole Content-Type,
    read only off the JSON path (its charset: text and forms; JSON that failed as UTF-8).
    """
    is_json = _is_json(content_type)
    if schema is not None:
        if raw and not is_json:
            if content_type == FORM:  # Motia gave such a step the parsed form: validate that
                return _validated(schema, parse_form(raw, header))
            raise BadBody(error_response(
                415, detail=f"this endpoint takes application/json or {FORM}, got {content_type}"))
        try:
            return schema.decode_json(raw) if raw else schema.validate(None)
        except MalformedJSON as exc:
            utf8 = _utf8_json(raw, header)
            if utf8 is not None:
                return _parse_body(utf8, content_type, schema)
            raise BadBody(error_response(400, error="Malformed JSON", detail=exc.errors[0]["message"])) from None
        except SchemaError as exc:
            errors = exc.errors if raw else [{"path": "$", "message": "body is empty; expected JSON"}]
            raise BadBody(error_response(400, error="Invalid request body", errors=errors)) from None
    if not raw:
        return None
    if is_json:
        try:
            return decode_json(raw)  # faults hook (issue 10 item 6): the depth limit of edge._json
        except JSONTooDeep as exc:
            raise BadBody(error_response(400, error="Malformed JSON", detail=exc.errors[0]["message"])) from None
        except msgspec.DecodeError as exc:
            if content_type == "":  # no content type and not JSON: hand over the text
                return raw.decode("utf-8", "replace")
            utf8 = _utf8_json(raw, header)
            if utf8 is not None:
                return _parse_body(utf8, content_type, None)
            raise BadBody(error_response(400, error="Malformed JSON", detail=str(exc))) from None
    if content_type.startswith("text/"):
        return decode_text(raw, header)
    if content_type == FORM:
        return parse_form(raw, header)
    return raw


def _validated(schema, data):
    try:
        return schema.validate(data)
    except SchemaError as exc:
        raise BadBody(error_response(400, error="Invalid request body", errors=exc.errors)) from None


def _utf8_json(raw: bytes, header: str | None) -> bytes | None:
    """JSON that declares UTF-16 or UTF-32, re-encoded as UTF-8; None for any other.

    RFC 8259 has JSON in UTF-8 and no charset parameter, so a declared charset is ignored and
    this runs only once the body failed as UTF-8 (the JSON path pays nothing). body-parser.json
    (Motia 0.x) decoded a declared ``utf-16``/``utf-32``, so such a body parses here too.
    """
    charset = (charset_of(header) or "").lower().replace("_", "-")
    if not charset.startswith(("utf-16", "utf-32", "utf16", "utf32")):
        return None
    codec = charset_codec(charset)  # None for "utf-16<junk>", without a lookup of the junk
    if codec is None:
        return None
    try:
        return raw.decode(codec).encode()
    except UnicodeError:
        return None


def _takes_json(method: str, path: str, content_type: str):
    """415 for a runtime endpoint's body that is not JSON (it took it as text and said only
    what shape it wanted; a form must not become the dict it wants either)."""
    detail = f"{method} {path} takes application/json, got {content_type}"
    if content_type == FORM:
        detail += " (curl -d sends that: add -H 'content-type: application/json')"
    return error_response(415, detail=detail)


def _query(query_string: str) -> dict:
    if not query_string:
        return {}
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        if key in out:
            current = out[key]
            out[key] = current + [value] if isinstance(current, list) else [current, value]
        else:
            out[key] = value
    return out


def _trace_id(headers) -> str:
    given = headers.get("x-trace-id")
    if given and _TRACE_ID.match(given):
        return given
    parent = headers.get("traceparent")
    if parent:
        match = _TRACEPARENT.match(parent.strip().lower())
        if match:
            return match.group(1)
    return new_id(16)


def _not_allowed(allowed):
    status, headers, body = error_response(405, allowed=allowed)
    headers.append(("allow", ", ".join(allowed)))
    return status, headers, body


def _too_large(limit: int):
    return error_response(413, detail=f"request body is over the {limit}-byte limit (--max-body / EDGE_MAX_BODY)", limit=limit)
