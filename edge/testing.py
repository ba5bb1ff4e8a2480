"""``edge.testing``: run a project's steps in-process on a temporary store, under test control.

::

    from edge.testing import App

    async def test_create_todo(tmp_path):
        async with App("steps", data_dir=tmp_path) as app:
            r = await app.http("POST", "/todos", json={"title": "x"})
            assert r.status == 201
            assert app.enqueued("todo.created")[0]["title"] == "x"
            await app.drain()
            ...

What runs is the real thing: discovery, the runtime, the queue service, state, streams and
the HTTP app (``app.http`` calls the RSGI entry point with an in-memory request: routing,
schemas, middleware and error answers are the server's own). Only the socket and the clocks
are not real:

- **Where handlers run.** As in the server: ``async def`` handlers on an asyncio loop, the
  runtime's services in trio as its guest, sync handlers in a thread pool. Under an asyncio
  test (pytest-asyncio, anyio) the runtime joins the test's own loop. Under a trio test
  (pytest-trio, anyio's trio backend) there is no asyncio loop to join, so the App starts one,
  with the runtime on it, in a helper thread, and every ``await app.…`` call hops there and
  back: handlers written for asyncio (``asyncio.sleep``, httpx, aiohttp) behave exactly as
  in the server whichever test runner you use. (The one difference: under trio, objects a
  test shares with a handler live on another loop, so an ``asyncio.Event`` made in the test
  cannot be awaited by the handler.)
- **Time.** The runtime's trio clock is a :class:`trio.testing.MockClock` that stands still,
  and the wall clock edge uses (due times, cron slots) is derived from it, so both move only
  when the test says: ``app.clock.advance(...)``, or ``app.drain()`` when everything left
  waits for a retry or a delay. Cron fires only in ``app.tick_cron()``. Handlers that read
  ``time.time()`` themselves still see the real time.

Details and the full API: docs/testing.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import json as _json
import shutil
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlencode

import msgspec
import sniffio
import trio
import trio.testing

from ._boundary import CANCEL_GRACE, HandlerError, Host, Skipped, cancel
from ._cron import next_fire_after
from ._state import StateEvent
from .api import ApiRequest
from .context import current_context
from .errors import ConfigError, EdgeError
from .schema import to_builtins
from .settings import Settings
from .steps import DEFAULT_DIRS, discover
from .streams import StreamEvent
from .tracing import new_id

__all__ = ["App", "Clock", "Response", "Enqueued", "Invocation", "InjectedFailure", "DrainTimeout",
           "Skipped"]

#: Real seconds :meth:`App.drain` waits for work to go quiet before it gives up.
DRAIN_TIMEOUT = 30.0
#: Cron slots one :meth:`App.tick_cron` fires at most (an every-second job over a year is a mistake).
MAX_CRON_SLOTS = 100_000
#: Where the wall clock starts when the test does not say: a fixed instant, so that runs repeat.
DEFAULT_START = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

#: The queue delivery under way in this context: a list the handler's record goes into (see
#: ``App._watch_timeouts``). A timeout is seen only by the caller of the handler, not by the
#: handler (which sees a cancellation, or, in a thread, nothing at all).
_attempt: contextvars.ContextVar[list | None] = contextvars.ContextVar("edge_testing_attempt", default=None)


class InjectedFailure(Exception):
    """Raised in place of a handler by :meth:`App.fail`."""


class DrainTimeout(EdgeError):
    """:meth:`App.drain` waited ``timeout`` real seconds and work was still running."""


# -- values a test reads ------------------------------------------------------------------------

class Response:
    """What :meth:`App.http` answers: ``status``, ``headers`` (lower-case names), ``body``
    (bytes), ``text`` and ``json`` (the body decoded)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def json(self) -> Any:
        """The body as JSON (raises ``ValueError`` saying what came back when it is not JSON)."""
        try:
            return _json.loads(self.body)
        except ValueError:
            raise ValueError(f"the response body is not JSON (status {self.status}): {self.text[:200]!r}") from None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.text[:60]!r}>"


class Enqueued(msgspec.Struct, frozen=True):
    """One message a step (or :meth:`App.emit`) enqueued."""

    topic: str
    data: Any
    trace_id: str
    step: str | None  # None: enqueued by the test itself
    group: str | None = None


class Invocation(msgspec.Struct):
    """One run of a step's handler, as :meth:`App.invocations` lists it."""

    step: str
    trigger: str  # "http", "queue", "cron", "state", "stream" or "invoke"
    input: Any
    trace_id: str
    outcome: str = "running"  # "ok", "error" or "running"
    error: str | None = None  # "TypeName: message" when the handler raised or timed out


class Clock:
    """The test's time: trio's clock inside the runtime (retry backoff, delays, handler
    timeouts) and the wall clock edge uses (due times, cron slots), moved together.

    Args:
        start: the wall-clock instant the App starts at (aware datetime or epoch seconds).
    """

    def __init__(self, start: datetime | float | None = None):
        self.mock = trio.testing.MockClock(rate=0)
        if start is None:
            start = DEFAULT_START
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise ConfigError("App(start=...): give an aware datetime (with tzinfo), "
                                  "e.g. datetime(2026, 6, 1, 3, tzinfo=timezone.utc)")
            start = start.timestamp()
        self._base = float(start) - self.mock.current_time()
        #: Set by the App once the runtime runs: wakes trio after a jump.
        self._wake: Callable[[], None] | None = None

    def time(self) -> float:
        """The wall clock, seconds since the epoch (callable from any thread)."""
        return self._base + self.mock.current_time()

    def elapsed(self) -> float:
        """Seconds the clock has moved since the App started."""
        return self.mock.current_time()

    def now(self) -> datetime:
        """The wall clock as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), timezone.utc)

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0) -> None:
        """Move time forward. Retries and delayed messages that fall due run at the test's
        next ``await`` (``await app.drain()`` waits for them); cron fires in ``tick_cron``."""
        total = seconds + 60 * minutes + 3600 * hours + 86400 * days
        if total < 0:
            raise ValueError(f"clock.advance: time only moves forward; got {total:g} s")
        self.mock.jump(total)
        if self._wake is not None:
            self._wake()

    def __repr__(self) -> str:
        return f"<Clock {self.now().isoformat()}>"


# -- the in-memory RSGI request -----------------------------------------------------------------

class _Headers:
    """The part of Granian's RSGI headers object the app uses (names lower-case)."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: list[tuple[str, str]]):
        self._pairs = [(k.lower(), str(v)) for k, v in pairs]

    def get(self, key: str, default: Any = None) -> Any:
        key = key.lower()
        return next((v for k, v in self._pairs if k == key), default)

    def get_all(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._pairs if k == key]

    def items(self):
        return list(self._pairs)

    def keys(self):
        return [k for k, _ in self._pairs]

    def values(self):
        return [v for _, v in self._pairs]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._pairs)


class _Scope:
    __slots__ = ("proto", "http_version", "rsgi_version", "scheme", "method", "path", "query_string",
                 "headers", "client", "server", "authority")

    def __init__(self, method: str, path: str, query: str, headers: _Headers):
        self.proto = "http"
        self.http_version = "1.1"
        self.rsgi_version = "1.5"
        self.scheme = "http"
        self.method = method
        self.path = path
        self.query_string = query
        self.headers = headers
        self.client = "127.0.0.1:50000"  # a client on this machine, as `edge` commands are
        self.server = "127.0.0.1:3000"
        self.authority = None


class _Proto:
    """The request body and the response slot of one in-memory request."""

    def __init__(self, body: bytes):
        self._body = body
        self.answer: tuple[int, list, bytes] | None = None

    async def __call__(self) -> bytes:
        return self._body

    def __aiter__(self):
        return self._chunks()

    async def _chunks(self):
        if self._body:
            yield self._body

    async def client_disconnect(self) -> None:
        await asyncio.get_running_loop().create_future()  # the test's client never leaves

    def response_bytes(self, status: int, headers: list, body: bytes) -> None:
        self.answer = (status, list(headers), bytes(body))

    def response_str(self, status: int, headers: list, body: str) -> None:
        self.answer = (status, list(headers), body.encode())

    def response_empty(self, status: int, headers: list) -> None:
        self.answer = (status, list(headers), b"")


# -- calling into the runtime's loop ---------------------------------------------------------------

class _Proxy:
    """``app.state`` / ``app.streams``: the runtime's objects, every call made on its loop."""

    def __init__(self, app: "App", get: Callable[[], Any]):
        self._app = app
        self._get = get

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target = getattr(self._get(), name)
        if not callable(target):
            return _Proxy(self._app, lambda: getattr(self._get(), name))
        app, get = self._app, self._get

        async def call(*args, **kwargs):
            async def here():
                result = getattr(get(), name)(*args, **kwargs)
                return await result if hasattr(result, "__await__") else result

            return await app._on_loop(here)

        call.__name__ = name
        return call

    def __getitem__(self, name: str) -> "_Proxy":
        return _Proxy(self._app, lambda: self._get()[name])


class _LogSink:
    """The tracer's stdout: JSON lines, kept as dicts; echoed readably when asked (pytest then
    shows them for a failing test)."""

    def __init__(self, echo: bool):
        self.records: list[dict] = []
        self._partial = ""
        self._echo = echo

    def write(self, text: str) -> int:
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                record = _json.loads(line)
            except ValueError:
                record = {"level": "info", "msg": line}
            self.records.append(record)
            if self._echo:
                where = f" [{record['step']}]" if record.get("step") else ""
                data = f" {_json.dumps(record['data'])}" if record.get("data") and "traceback" not in record["data"] else ""
                print(f"edge {record.get('level', '').upper():5}{where} {record.get('msg')}{data}", file=sys.stdout)
                if isinstance(record.get("data"), dict) and record["data"].get("traceback"):
                    print(record["data"]["traceback"].rstrip(), file=sys.stdout)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _project_and_dirs(path: str | Path) -> tuple[Path, tuple[str, ...]]:
    """``App(path)``: a project folder (with steps/ or src/ in it), or a steps folder inside one."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise ConfigError(f"App({str(path)!r}): no such folder; pass the project folder or its steps folder "
                          f"(e.g. App(Path(__file__).parent.parent / 'steps'))")
    if any((path / d).is_dir() for d in DEFAULT_DIRS):
        return path, DEFAULT_DIRS
    return path.parent, (path.name,)


# -- the App ----------------------------------------------------------------------------------------

class App:
    """A project's steps running in-process, on a temporary (or given) data directory.

    Use as ``async with App(path) as app:`` from an asyncio or a trio test.

    Args:
        path: the project folder, or its steps folder (``"steps"``, relative to the working
            directory, or an absolute path).
        data_dir: where the LMDB store lives; default a fresh temporary folder, removed on exit.
        start: the wall-clock instant the test starts at (default 2026-01-01 12:00 UTC).
        echo: print the app's log lines (pytest shows them when a test fails).
        settings: any other :class:`~edge.settings.Settings` field (``durability``,
            ``max_body``, ``token``, ``cors_origins``, ``log_level``, ``threads``).
    """

    def __init__(self, path: str | Path = ".", *, data_dir: str | Path | None = None,
                 start: datetime | float | None = None, echo: bool = True, **settings: Any):
        self.project, self._dirs = _project_and_dirs(path)
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._settings = settings
        self.clock = Clock(start)
        self._sink = _LogSink(echo)
        self.runtime = None
        self.server = None  # the EdgeApp
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._trio_done: asyncio.Future | None = None
        self._temp: str | None = None
        self._messages: list[tuple[Enqueued, Any]] = []  # (entry, ctx of the enqueuing invocation)
        # Contexts whose handler raised (the objects: their ids alone were reused by CPython for
        # later contexts, whose enqueues then vanished from enqueued()).
        self._failed_ctx: set = set()
        self._timed_out: set[int] = set()  # ids of the records of attempts that timed out
        self._invocations: list[Invocation] = []
        self._failures: dict[str, list] = {}  # step -> [remaining (None: always), error]
        self._lock = threading.Lock()  # sync handlers run in threads
        self._cron_seen: datetime | None = None
        self.state = _Proxy(self, lambda: self.runtime.state)
        self.streams = _Proxy(self, lambda: self.runtime.streams.view())

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> "App":
        library = sniffio.current_async_library()
        discovery = discover(self.project, self._dirs)
        if discovery.errors:
            lines = "\n".join(e.message for e in discovery.errors)
            raise ConfigError(f"edge.testing: {len(discovery.errors)} step file(s) failed to load:\n{lines}")
        discovery = msgspec.structs.replace(discovery, steps=tuple(self._wrap(s) for s in discovery.steps))
        if self._data_dir is None:
            self._temp = tempfile.mkdtemp(prefix="edge-test-")
            self._data_dir = Path(self._temp)
        settings = Settings.from_env(env={}, dir=self.project, data_dir=self._data_dir, mode="start",
                                     **self._settings)
        from .runtime import Runtime

        self.runtime = Runtime.open(settings, discovery, out=self._sink, wall_clock=self.clock.time)
        self.runtime.queues.on_outgoing = self._record_enqueue
        queues = self.runtime.queues
        queues.invoke = self._watch_timeouts(queues.invoke)
        self._cron_seen = self.clock.now()
        try:
            if library == "asyncio" and not _has_guest(asyncio.get_running_loop()):
                self._loop = asyncio.get_running_loop()
                await self._start()
            else:
                await self._start_thread()
        except BaseException:
            self._cleanup()
            raise
        return self

    async def __aexit__(self, *exc_info) -> None:
        try:
            if self._thread is None:
                await self._stop()
            else:
                self._loop.call_soon_threadsafe(self._stop_event.set)
                await _wait_thread(self._thread)
                if self._thread_error is not None:
                    raise self._thread_error
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    async def _start(self) -> None:
        """On the runtime's asyncio loop: start trio as its guest, running the runtime."""
        loop = asyncio.get_running_loop()
        _mark_guest(loop, True)
        runtime = self.runtime

        def inside():
            self._token = trio.lowlevel.current_trio_token()

        started, done, self._cancel = Host(loop).start_runtime(runtime, clock=self.clock.mock, inside=inside,
                                                              cron=False)
        self._trio_done = done
        await started
        if done.done():  # the runtime failed to start
            _mark_guest(loop, False)
            runtime.close()
            done.result().unwrap()
        token = self._token
        self.clock._wake = lambda: _wake(token)
        from .server import build_app

        self.server = build_app(runtime, runtime.settings)

    async def _stop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._trio_done is not None and not self._trio_done.done():
                self._token.run_sync_soon(self._cancel.cancel)
            outcome = await self._trio_done
            self.clock._wake = None
            error = getattr(outcome, "error", None)
            if error is not None and not isinstance(error, trio.Cancelled):
                raise error
        finally:
            _mark_guest(loop, False)
            self.runtime.close()

    async def _start_thread(self) -> None:
        """Under trio (or a second App on one asyncio loop): the runtime gets its own asyncio
        loop in a helper thread."""
        ready = threading.Event()
        self._thread_error: BaseException | None = None
        self._start_error: BaseException | None = None

        async def main():
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            try:
                await self._start()
            except BaseException as exc:
                self._start_error = exc
                ready.set()
                return
            ready.set()
            await self._stop_event.wait()
            await self._stop()

        def run():
            try:
                asyncio.run(main())
            except BaseException as exc:
                self._thread_error = exc
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name="edge-testing-loop", daemon=True)
        self._thread.start()
        await _wait_event(ready)
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        if self._thread_error is not None:
            raise self._thread_error

    async def _on_loop(self, fn: Callable, *args) -> Any:
        """Run the coroutine function ``fn(*args)`` on the runtime's asyncio loop; then flush
        the log lines it produced, so ``app.logs`` shows them.

        It runs in a task of its own, as a request does in the server: a test that gives up
        on it (``asyncio.timeout``, ``wait_for``, trio's ``fail_after``, a cancel) cancels
        that task as edge cancels its own, so the handler sees a cancellation from outside
        (not a failure of its own), has up to :data:`~edge._boundary.CANCEL_GRACE` seconds
        to clean up, and the test gets its own ``TimeoutError`` or cancellation back."""
        started: list[asyncio.Task] = []
        abandoned = False

        async def run():
            if abandoned:  # the test gave up before this started: it never runs
                raise asyncio.CancelledError()
            started.append(asyncio.current_task())
            try:
                return await fn(*args)
            finally:
                self.runtime.tracer.flush_stdout()

        if self._thread is None:
            task = asyncio.get_running_loop().create_task(run())
            task.add_done_callback(_take_outcome)  # (however long its clean-up takes)
            try:
                await asyncio.wait((task,))
            except asyncio.CancelledError:
                cancel(task)
                await _grace(task)
                raise
            return task.result()
        # From an empty context: the task must not inherit the caller's (sniffio would
        # believe the runtime's asyncio loop is the test's trio).
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, run(), self._loop)

        def give_up():  # on the runtime's loop, where run() starts: no race with it
            nonlocal abandoned
            abandoned = True
            if started:
                cancel(started[0])

        return await _wait_future(future, lambda: self._loop.call_soon_threadsafe(give_up))

    # -- recording -----------------------------------------------------------------------------

    def _record_enqueue(self, out, data, group, trace_id) -> None:
        ctx = current_context.get()
        step = ctx.step.name if ctx is not None and ctx.step is not None else None
        entry = Enqueued(out.topic, to_builtins(data), trace_id, step, group)
        with self._lock:
            self._messages.append((entry, ctx))

    def _watch_timeouts(self, invoke):
        """The queue service's ``invoke`` (``fn(step, trigger, input, *, limit, ...)``, which raises
        TimeoutError past ``limit`` seconds), wrapped so that the record of an attempt that timed
        out says so, as the runtime logs it. Only the caller sees the timeout: the handler sees
        a cancellation, and one in a thread runs on after the attempt has failed."""
        async def invoke_watched(step, trigger, input, *, limit=None, **kw):
            attempt: list = []
            token = _attempt.set(attempt)
            try:
                return await invoke(step, trigger, input, limit=limit, **kw)
            except TimeoutError:
                self._attempt_timed_out(attempt, limit)
                raise
            finally:
                _attempt.reset(token)

        return invoke_watched

    def _attempt_timed_out(self, attempt: list, limit: float | None) -> None:
        # The message edge.queues.service logs and stores with the retry or the dead letter.
        error = f"TimeoutError: the handler did not finish within {limit:g} s" if limit is not None \
            else "TimeoutError: the handler did not finish in time"
        with self._lock:
            for record, ctx in attempt:
                record.outcome, record.error = "error", error
                self._timed_out.add(id(record))
                if ctx is not None:  # what it enqueued, even later from its thread, is discarded
                    self._failed_ctx.add(ctx)

    def _wrap(self, step):
        """The step with its handler wrapped: injected failures and the invocation record."""
        call = step.call
        if call is None:
            return step
        fn, name, app = call.fn, step.name, self

        def begin() -> Invocation:
            ctx = current_context.get()
            kind = "invoke" if ctx is None or ctx.trigger_model is None else ctx.trigger_model.type
            record = Invocation(name, kind, ctx.input if ctx is not None else None,
                                ctx.trace_id if ctx is not None else "")
            attempt = _attempt.get()
            with app._lock:
                app._invocations.append(record)
                if attempt is not None and not attempt:  # the delivery's own handler, not a ctx.invoke callee
                    attempt.append((record, ctx))
                plan = app._failures.get(name)
                error = None
                if plan is not None:
                    remaining, error = plan
                    if remaining is not None:
                        plan[0] = remaining - 1
                        if plan[0] <= 0:
                            del app._failures[name]
            if error is not None:
                failure = error() if isinstance(error, type) else error
                end(record, failure)
                raise failure
            return record

        def end(record: Invocation, exc: BaseException | None) -> None:
            with app._lock:
                if id(record) in app._timed_out:  # the attempt failed already (a thread returning late)
                    return
                if exc is None:
                    record.outcome = "ok"
                    return
                record.outcome, record.error = "error", f"{type(exc).__name__}: {exc}"
                ctx = current_context.get()
                if ctx is not None:
                    app._failed_ctx.add(ctx)

        if call.is_async:
            async def wrapped(*args):
                record = begin()
                try:
                    result = await fn(*args)
                except BaseException as exc:
                    end(record, exc)
                    raise
                end(record, None)
                return result
        else:
            def wrapped(*args):
                record = begin()
                try:
                    result = fn(*args)
                except BaseException as exc:
                    end(record, exc)
                    raise
                end(record, None)
                return result

        return msgspec.structs.replace(step, call=msgspec.structs.replace(call, fn=wrapped))

    # -- what a test does ----------------------------------------------------------------------

    async def http(self, method: str, path: str, *, json: Any = None, body: bytes | str | None = None,
                   headers: dict | list | None = None, query: dict | None = None) -> Response:
        """Send one request through the real HTTP app (routing, schemas, middleware, the
        runtime's ``/__edge/`` endpoints) without a socket.

        Args:
            json: a body sent as JSON (sets ``content-type: application/json``).
            body: raw bytes or text instead.
            headers: request headers.
            query: query parameters (or put them in ``path`` after ``?``).
        """
        if json is not None and body is not None:
            raise ValueError("app.http: pass json= or body=, not both")
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        names = {k.lower() for k, _ in pairs}
        raw = b""
        if json is not None:
            raw = msgspec.json.encode(to_builtins(json))
            if "content-type" not in names:
                pairs.append(("content-type", "application/json"))
        elif body is not None:
            raw = body.encode() if isinstance(body, str) else bytes(body)
        if raw and "content-length" not in names:
            pairs.append(("content-length", str(len(raw))))
        if "host" not in names:
            pairs.append(("host", "localhost"))
        path, _, qs = path.partition("?")
        path = unquote(path, errors="replace")  # as Granian gives it to the app
        if query:
            qs = "&".join(filter(None, [qs, urlencode(query, doseq=True)]))
        scope = _Scope(method.upper(), path, qs, _Headers(pairs))
        proto = _Proto(raw)

        async def send():
            await self.server.__rsgi__(scope, proto)
            return proto.answer

        answer = await self._on_loop(send)
        if answer is None:
            raise EdgeError(f"app.http: {method} {path} got no answer from the app")
        return Response(*answer)

    async def run(self, step_name: str, input: Any = None, *, trigger: int | str | None = None) -> Any:
        """Run one step's handler through the boundary and return what it returned.

        ``input`` is what that trigger delivers: the message data (checked against the
        queue trigger's input schema), a request as ``{"body", "path_params", "query_params",
        "headers"}`` (or an :class:`~edge.api.ApiRequest`), a state or stream event as a dict,
        nothing for cron. A queued trigger's enqueues are committed after it succeeds (as
        with the ack). ``trigger`` picks the trigger by index or type (default: the first).

        Raises:
            whatever the handler raised; :class:`Skipped` when the trigger's condition was false.
        """
        runtime = self.runtime
        step = runtime.steps.get(step_name)
        if step is None:
            raise ConfigError(f"app.run: no step named {step_name!r}; the steps are {', '.join(sorted(runtime.steps))}")
        chosen = _pick_trigger(step, trigger)
        value = self._input_for(step, chosen, input)

        async def go():
            try:
                result, ctx = await runtime.invoke(step, chosen, value, trace_id=new_id(16))
            except HandlerError as exc:
                raise exc.original from None
            if ctx.outbox:
                await runtime.commit_outbox(ctx)
            return result

        return await self._on_loop(go)

    def _input_for(self, step, trigger, input: Any) -> Any:
        kind = trigger.type if trigger is not None else None
        schema = self.runtime.schema_for(step, trigger) if trigger is not None else None
        if kind == "http":
            if isinstance(input, ApiRequest):
                return input
            given = dict(input or {})
            unknown = set(given) - {"body", "path_params", "pathParams", "query_params", "queryParams",
                                    "headers", "method", "path"}
            if unknown:
                raise ValueError(f"app.run({step.name!r}): unknown request keys {sorted(unknown)}; "
                                 'give {"body", "path_params", "query_params", "headers"}')
            body = to_builtins(given.get("body"))
            raw = msgspec.json.encode(body) if body is not None else b""
            if schema is not None:
                body = schema.validate(body)
            return ApiRequest(given.get("method", trigger.method), given.get("path", trigger.path),
                              given.get("path_params", given.get("pathParams", {})),
                              given.get("query_params", given.get("queryParams", {})),
                              {k.lower(): v for k, v in (given.get("headers") or {}).items()}, body, raw)
        if kind == "queue":
            data = to_builtins(input)
            return schema.validate(data) if schema is not None else data
        if kind == "state":
            return input if isinstance(input, StateEvent) else StateEvent(to_builtins(input or {}))
        if kind == "stream":
            return input if isinstance(input, StreamEvent) else StreamEvent(to_builtins(input or {}))
        return input

    async def emit(self, topic: str, data: Any, *, group: str | None = None) -> None:
        """Enqueue a message as ``edge emit`` does (durable when this returns)."""
        async def go():
            await self.runtime.queues.emit(topic, data, group=group, trace_id=new_id(16))

        await self._on_loop(go)

    async def drain(self, *, skip_time: bool = True, timeout: float = DRAIN_TIMEOUT) -> None:
        """Run queue, state-trigger and stream-trigger work until nothing is left to do.

        With ``skip_time`` (the default), when all that is left waits for a retry's backoff
        or a delayed delivery, the clock jumps to it (as Temporal's time skipping does), so
        retries and dead letters are reached at once; ``app.clock`` shows the time that passed.

        Raises:
            DrainTimeout: work still ran after ``timeout`` real seconds (a handler that hangs).
        """
        await self._on_loop(self._drain_here, skip_time, timeout)

    async def _drain_here(self, skip_time: bool, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_since = None
        while True:
            busy = self._busy()
            if busy:
                quiet_since = None
                if loop.time() > deadline:
                    raise DrainTimeout(f"app.drain: still busy after {timeout:g} s: {busy}")
                await asyncio.sleep(0.0005)
                continue
            # Quiet now: stay quiet for a few loop turns (callbacks in flight between the loops).
            if quiet_since is None:
                quiet_since = loop.time()
            if loop.time() - quiet_since < 0.002:
                await asyncio.sleep(0)
                continue
            wait = self._next_wait() if skip_time else None
            if wait is None:
                return
            self.clock.advance(wait)
            quiet_since = None
            await asyncio.sleep(0)

    def _busy(self) -> str:
        """What is still running ("" when nothing): handlers, messages ready, commits pending."""
        queues = self.runtime.queues
        if self.server is not None and self.server.inflight:
            return f"{self.server.inflight} HTTP request(s) in flight"
        if queues.committer.batch:
            return "queue changes waiting for a commit"
        due = queues.timers.next_at
        if due is not None and due <= self.clock.mock.current_time():
            return "queue timers due"
        for sub in queues.subscriptions:
            if sub.in_flight:
                return f"{sub.label}: {sub.in_flight} handler(s) running"
            if sub.ready:
                return f"{sub.label}: {len(sub.ready)} message(s) ready"
            if sub.done_keys:
                return f"{sub.label}: acks being committed"
        return ""

    def _next_wait(self) -> float | None:
        """Seconds to the next queue timer, when some message waits for time (a retry, a delay)."""
        queues = self.runtime.queues
        if not any(sub.waiting or sub.refill_at is not None for sub in queues.subscriptions):
            return None
        due = queues.timers.next_at
        return None if due is None else max(0.0, due - self.clock.mock.current_time())

    async def tick_cron(self) -> list[tuple[str, datetime]]:
        """Fire every cron slot between the previous tick (or the start) and ``app.clock.now()``,
        in time order, each run finished before the next; return ``[(step, slot)]`` fired."""
        now = self.clock.now()
        since = self._cron_seen
        due = []
        for job in self.runtime.cron_jobs:
            after = since
            while True:
                slot = next_fire_after(job.schedule, after)
                if slot is None or slot > now:
                    break
                due.append((slot, job))
                if len(due) > MAX_CRON_SLOTS:
                    raise EdgeError(f"app.tick_cron: more than {MAX_CRON_SLOTS} slots are due since "
                                    f"{since.isoformat()}; advance the clock in smaller steps")
                after = slot
        due.sort(key=lambda item: item[0])
        self._cron_seen = now
        fired = []

        async def go():
            for slot, job in due:
                await self.runtime.fire_cron(job.key, slot)
                fired.append((job.key.rsplit("#", 1)[0], slot))  # keys are "<step>#<trigger index>"

        await self._on_loop(go)
        return fired

    def fail(self, step_name: str, times: int | None = 1, *, error: BaseException | type | None = None) -> None:
        """Make the next ``times`` runs of a step raise ``error`` instead of running (``None``:
        every run from now on), to test retries and dead letters.

        Args:
            error: the exception (instance or class) to raise; default :class:`InjectedFailure`.
        """
        if step_name not in self.runtime.steps:
            raise ConfigError(f"app.fail: no step named {step_name!r}; the steps are {', '.join(sorted(self.runtime.steps))}")
        if times is not None and times < 1:
            raise ValueError(f"app.fail: times must be at least 1 (or None: always), got {times}")
        if error is None:
            error = InjectedFailure(f"injected by app.fail({step_name!r}, times={times})")
        with self._lock:
            self._failures[step_name] = [times, error]

    # -- what a test reads ---------------------------------------------------------------------

    def enqueued(self, topic: str | None = None) -> list[Any]:
        """The data of every message enqueued to ``topic``, oldest first (every topic: the
        :class:`Enqueued` entries). Messages a queued handler enqueued before it failed are left
        out: they were discarded with its attempt, as in the server."""
        with self._lock:
            kept = [e for e, ctx in self._messages
                    if ctx is None or ctx.outbox is None or ctx not in self._failed_ctx]
        if topic is None:
            return kept
        return [e.data for e in kept if e.topic == topic]

    async def started(self, step_name: str, *, timeout: float = DRAIN_TIMEOUT) -> Invocation:
        """Wait until a handler of ``step_name`` is running; its invocation. For a test that
        moves the clock past the handler's ``timeout`` (``drain`` does not jump to it).

        Raises:
            DrainTimeout: none ran within ``timeout`` real seconds.
        """
        async def wait():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                running = [i for i in self.invocations(step_name) if i.outcome == "running"]
                if running:
                    return running[-1]
                if loop.time() > deadline:
                    raise DrainTimeout(f"app.started: no handler of step {step_name!r} ran within {timeout:g} s")
                await asyncio.sleep(0.0005)

        return await self._on_loop(wait)

    def invocations(self, step_name: str | None = None) -> list[Invocation]:
        """Every run of a step's handler (all steps: ``None``), oldest first."""
        with self._lock:
            return [i for i in self._invocations if step_name is None or i.step == step_name]

    @property
    def logs(self) -> list[dict]:
        """The app's log lines as dicts (``time``, ``level``, ``msg``, ``trace_id``, ``step``, ``data``)."""
        return list(self._sink.records)

    async def stream_items(self, stream: str, group: str) -> list[Any]:
        """The items of one stream group."""
        return await self.streams[stream].get_group(group)

    async def dead_letters(self, step_name: str | None = None) -> list[dict]:
        """The dead-letter queue (what ``edge dlq list --json`` shows), oldest first."""
        from .queues.dlq import list_dead

        async def go():
            return list_dead(self.runtime.store, step=step_name)

        return await self._on_loop(go)


# -- helpers -----------------------------------------------------------------------------------------

def _pick_trigger(step, trigger):
    if not step.triggers:
        return None
    if trigger is None:
        return step.triggers[0]
    if isinstance(trigger, int):
        if not 0 <= trigger < len(step.triggers):
            raise ValueError(f"app.run({step.name!r}, trigger={trigger}): the step has {len(step.triggers)} trigger(s)")
        return step.triggers[trigger]
    found = [t for t in step.triggers if t.type == trigger]
    if not found:
        kinds = ", ".join(repr(t.type) for t in step.triggers)
        raise ValueError(f"app.run({step.name!r}, trigger={trigger!r}): the step's triggers are {kinds}")
    return found[0]


#: Attribute set on an asyncio loop while an App's trio guest runs on it (one guest per loop).
_GUEST_MARK = "_edge_testing_guest"


def _has_guest(loop) -> bool:
    return getattr(loop, _GUEST_MARK, False)


def _mark_guest(loop, value: bool) -> None:
    try:
        setattr(loop, _GUEST_MARK, value)
    except AttributeError:
        pass  # a loop with __slots__: nesting Apps on it is then not detected


def _wake(token: trio.lowlevel.TrioToken) -> None:
    try:
        token.run_sync_soon(lambda: None)
    except trio.RunFinishedError:
        pass


async def _wait_future(future, give_up: Callable[[], Any]) -> Any:
    """Wait for a ``concurrent.futures.Future`` from trio or asyncio. Cancelled, the caller
    calls ``give_up()`` and waits up to :data:`~edge._boundary.CANCEL_GRACE` real seconds for
    the future to settle (the handler's clean-up), then raises its cancellation."""
    if sniffio.current_async_library() == "asyncio":
        waiter = asyncio.wrap_future(future)
        waiter.add_done_callback(_take_outcome)
        try:
            return await asyncio.shield(waiter)
        except asyncio.CancelledError:
            give_up()
            await _grace(waiter)
            raise
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_):
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    future.add_done_callback(wake)
    try:
        await done.wait()
    except trio.Cancelled:
        give_up()
        with trio.CancelScope(shield=True):  # in real time: the test's clock may be a mock one
            await trio.to_thread.run_sync(concurrent.futures.wait, [future], CANCEL_GRACE)
        raise
    return future.result()


async def _grace(future: asyncio.Future) -> None:
    """Wait up to :data:`~edge._boundary.CANCEL_GRACE` seconds for a given-up ``future`` (the
    handler's clean-up), whatever cancels the waiter meanwhile (an enclosing timeout: the
    caller raises its cancellation after this, once)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_GRACE
    while not future.done() and loop.time() < deadline:
        try:
            await asyncio.wait((future,), timeout=deadline - loop.time())
        except asyncio.CancelledError:
            continue


def _take_outcome(future) -> None:
    """Take a given-up future's outcome, so asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()


async def _wait_event(event: threading.Event) -> None:
    if sniffio.current_async_library() == "asyncio":
        await asyncio.get_running_loop().run_in_executor(None, event.wait)
    else:
        await trio.to_thread.run_sync(event.wait)


async def _wait_thread(thread: threading.Thread) -> None:
    if sniffio.current_async_library() == "asyncio":
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
    else:
        await trio.to_thread.run_sync(thread.join)

