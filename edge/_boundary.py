"""The boundary: every handler run of every trigger goes through :meth:`Boundary.invoke`.

Where a handler runs
--------------------
- ``async def`` handlers run on the **asyncio** host loop (the one Granian serves on), so
  ``asyncio.sleep/gather/wait_for/timeout/to_thread`` and every asyncio library work. An HTTP
  request is already on that loop: no hop. A queue, cron, state or stream invocation comes from
  a trio service and hops once: the handler becomes an asyncio task and the trio worker waits
  for it (cancelling the trio side — a timeout, shutdown — cancels the task).
- Steps with ``"runtime": "trio"`` run their async handler as a trio task instead (from HTTP:
  one hop into the runtime's nursery).
- Sync handlers run in a bounded thread pool (``--threads`` / ``EDGE_THREADS``), so a blocking
  handler never stalls the loop; past its ``timeout`` the attempt counts as failed (the thread
  itself cannot be stopped and finishes in the background).
- Without a host loop (in-process tests on trio's MockClock) everything runs in trio, and sync
  handlers inline, so that virtual time only moves when every handler waits.

What the boundary guarantees
----------------------------
Whatever a handler (or its condition or middleware) raises becomes that invocation's outcome:
:class:`HandlerError` (logged once, with its traceback, under an ``error_id``) or
:class:`Skipped`; the writes it started are waited for before it counts as done; a span is
recorded whatever happens. Nothing a handler does reaches the runtime's nurseries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import math
import threading
import time
import weakref
from typing import Any, Callable

import sniffio
import trio

from ._loops import (current_invocation, current_library, in_async, invoked_from_thread, maybe_await, register_host,
                     thread_run)
from .context import Context
from .errors import BadResult, RequestBodyError, Retry, StorageFull
from .tracing import Span, new_id

__all__ = ["Boundary", "Host", "Skipped", "HandlerError", "maybe_await", "QUEUED_TYPES", "cancelled_from_outside",
           "cancel", "describe"]

#: Trigger types whose invocation acknowledges a stored message: their enqueues commit with it.
QUEUED_TYPES = frozenset(("queue", "state", "stream"))
#: How long a cancelled asyncio handler gets to finish its clean-up before trio stops waiting.
CANCEL_GRACE = 5.0


class Skipped(Exception):
    """A trigger's condition returned false: the handler did not run."""


class HandlerError(Exception):
    """A handler raised; ``error_id`` ties the response or DLQ entry to the logged traceback
    (None for :class:`~edge.errors.StorageFull`, which is not logged per invocation)."""

    def __init__(self, original: BaseException, error_id: str | None):
        super().__init__(describe(original))
        self.original = original
        self.error_id = error_id


#: How much of an exception's message a failure's headline shows (the traceback has it whole).
HEADLINE_CHARS = 300


def describe(exc: BaseException, limit: int | None = None) -> str:
    """``Type: message`` (``Type`` alone when there is none; the first line of the message, cut
    to ``limit`` characters, when given). An exception whose ``str()`` raises still gets one."""
    try:
        text = str(exc).strip()
    except Exception:  # a handler's exception class with a broken __str__
        text = "<str() of the exception failed>"
    if limit is not None:
        text = text.split("\n", 1)[0]
        if len(text) > limit:
            text = text[:limit] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _hint(step, exc: BaseException) -> str | None:
    """A teaching line for the common mistakes: trio code in a handler that runs on asyncio,
    and asyncio code in one that runs on trio."""
    if step.runtime == "trio":
        if isinstance(exc, TypeError) and "unrecognized yield message" in describe(exc):
            return (f'this handler awaits asyncio, but its config says "runtime": "trio": remove that from '
                    f"{step.file} (handlers run on asyncio by default), or use trio")
        return None
    if isinstance(exc, RuntimeError) and "must be called from async context" in describe(exc):
        tb = exc.__traceback__
        while tb is not None:
            if "/trio/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
                return (f'this handler calls trio, but async handlers run on asyncio: add "runtime": "trio" '
                        f"to the config of {step.file}, or use asyncio")
            tb = tb.tb_next
    return None


class Host:
    """The asyncio loop that hosts Granian and the handlers, and the trio nursery that
    trio-runtime handlers started from asyncio run in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, nursery: trio.Nursery | None = None):
        self.loop = loop
        self.nursery = nursery
        self.token: trio.lowlevel.TrioToken | None = None  # set with the nursery, inside trio
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # built on the loop's own thread (as the server and edge.testing do)
            register_host(loop)

    async def run_asyncio(self, fn: Callable, *args) -> Any:
        """From a trio task: run ``fn(*args)`` (a coroutine function) as an asyncio task."""
        task = self.loop.create_task(fn(*args))
        done = trio.Event()
        task.add_done_callback(lambda _: done.set())
        try:
            await done.wait()
        except trio.Cancelled:
            cancel(task)
            with trio.move_on_after(CANCEL_GRACE) as scope:
                scope.shield = True
                await done.wait()
            raise
        return task.result()

    async def run_trio(self, fn: Callable, *args) -> Any:
        """From an asyncio task: run ``fn(*args)`` as a trio task in the runtime's nursery."""
        future = self.loop.create_future()
        scope = trio.CancelScope()  # cancelled when the caller is (an HTTP trigger's timeout)

        async def run():
            # Resolved on every path (STACK-NOTES 4), or the caller would wait forever.
            try:
                with scope:
                    result = await fn(*args)
                    if not future.done():
                        future.set_result(result)
            except BaseException as exc:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeStopping())
                if not isinstance(exc, Exception):
                    raise
            # (the scope cancelled: the caller left, nobody waits for an answer)

        self.nursery.start_soon(run)
        try:
            return await future
        except asyncio.CancelledError:
            if future.cancelled() and self.token is not None:  # the caller was, not the trio side
                try:
                    self.token.run_sync_soon(scope.cancel)
                except trio.RunFinishedError:
                    pass
            raise

    def start_runtime(self, runtime, *, clock=None, signals: bool = True, inside: Callable | None = None,
                      **serve_options) -> tuple[asyncio.Future, asyncio.Future, trio.CancelScope]:
        """Start ``runtime.serve(host=self)`` as trio's guest on this loop.

        Returns ``(started, done, cancel)``: ``started`` resolves once the services run (or the
        runtime failed to start), ``done`` with trio's outcome when the run ends, ``cancel``
        stops it. ``inside()`` is called first inside trio; ``clock`` is trio's clock (tests).
        """
        loop = self.loop
        started, done = loop.create_future(), loop.create_future()
        cancel = trio.CancelScope()

        async def main():
            if inside is not None:
                inside()
            with cancel:
                await runtime.serve(host=self, task_status=_Started(started), **serve_options)

        def finished(outcome):
            if not started.done():
                started.set_result(None)
            if not done.done():
                done.set_result(outcome)

        trio.lowlevel.start_guest_run(
            main, run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon, done_callback=finished,
            host_uses_signal_set_wakeup_fd=signals, clock=clock,
        )
        return started, done, cancel

    def call_blocking(self, fn: Callable, *args) -> Any:
        """From a thread that is not the loop thread: run ``fn(*args)`` on the loop, wait."""
        return self.await_blocking(_call, fn, *args)

    def await_blocking(self, fn: Callable, *args, run: "ThreadRun | None" = None) -> Any:
        """From a thread that is not the loop thread: ``await fn(*args)`` on the loop, wait.
        With ``run`` (the sync handler's run this thread serves), the coroutine is one of its
        callees: cancelled when the handler's caller gives up (see :class:`ThreadRun`); the
        thread then gets ``concurrent.futures.CancelledError`` once it has ended."""
        coro = fn(*args) if run is None else run.call(fn, *args)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class ThreadRun:
    """One sync handler's run in a pool thread, as its ``ctx.invoke`` calls see it. The
    thread cannot be stopped, but once its caller stopped waiting (its timeout, the runtime
    stopping) the async callees it waits for are cancelled, as edge cancels its own tasks
    (they held the thread, and ran on, until they ended), and a later ``ctx.invoke`` starts
    nothing. Used on the loop's thread only (:meth:`call` runs there, and so does
    :meth:`give_up`, from the boundary's wait for the thread)."""

    __slots__ = ("given_up", "_callees")

    def __init__(self):
        self.given_up = False
        self._callees: set[asyncio.Task] = set()

    async def call(self, fn: Callable, *args) -> Any:
        if self.given_up:
            raise asyncio.CancelledError()
        task = asyncio.current_task()
        self._callees.add(task)
        try:
            return await fn(*args)
        finally:
            self._callees.discard(task)

    def give_up(self) -> None:
        self.given_up = True
        for task in list(self._callees):
            cancel(task)


def _is_async(fn: Callable) -> bool:
    """Whether ``fn`` is a coroutine function (or an object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


async def _in_own_thread(run: Callable) -> Any:
    """``run()`` in a thread started for it (a ``ctx.invoke`` callee of a sync handler)."""
    if current_library() == "trio":
        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, exc):
        if not future.done():
            future.set_exception(exc) if exc is not None else future.set_result(result)

    def work():
        try:
            result = run()
        except BaseException as exc:  # the handler's outcome, whatever it is
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name="edge-invoke", daemon=True).start()
    return await future


class RuntimeStopping(asyncio.CancelledError):
    """What an asyncio caller of a trio step gets when the runtime stops under it."""

    def __init__(self):
        super().__init__("the runtime is stopping")


class LateReturn(TimeoutError):
    """A bounded run returned after its deadline (it blocked the loop or swallowed the
    cancellation): the attempt failed all the same."""


#: The asyncio tasks edge itself cancelled (a timeout, the runtime stopping, a client gone, the
#: trio side cancelled): a CancelledError in one of them is edge's, not the handler's.
_cancelled_by_edge: "weakref.WeakSet[asyncio.Task]" = weakref.WeakSet()


def cancel(task: asyncio.Task) -> None:
    """Cancel an asyncio ``task`` as edge does (:func:`cancelled_from_outside` then knows)."""
    _cancelled_by_edge.add(task)
    task.cancel()


def cancelled_from_outside(exc: BaseException, nested: bool = False) -> bool:
    """Whether ``exc`` is a cancellation of the invocation itself, not one the handler caused.

    Edge's own cancels (a timeout, the runtime stopping, a client gone) go through
    :func:`cancel`, which marks the task. A handler that cancels its own task, or raises a
    ``trio.Cancelled`` it kept from a scope of its own, caused its failure: both were once
    taken for edge's and left the runtime's nursery or a queue worker with an exception nobody
    caught. A ``nested`` run (a ``ctx.invoke`` callee) leaves an asyncio cancellation to its
    caller: the caller's ``asyncio.timeout``, ``wait_for`` or ``TaskGroup`` cancels the task
    the callee runs in, and must see its cancellation come back, not the callee's error."""
    if isinstance(exc, RuntimeStopping):
        return True
    if isinstance(exc, BaseExceptionGroup):  # a trio nursery's group: edge's if every leaf is Cancelled
        if exc.split(trio.Cancelled)[1] is not None:
            return False
    if isinstance(exc, (trio.Cancelled, BaseExceptionGroup)):  # trio cancels through the scopes around a task
        try:
            return trio.current_effective_deadline() == -math.inf
        except RuntimeError:  # not in a trio task
            return False
    if isinstance(exc, asyncio.CancelledError):
        task = _running_task()  # (none: plain trio, no host: the handler's own)
        if task is None or task.cancelling() == 0:
            return False
        return nested or task in _cancelled_by_edge
    return False


def _running_task() -> asyncio.Task | None:
    """The asyncio task running now; None outside one, or with no asyncio loop at all."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _uncancel() -> None:
    """Take back the cancel request of the running asyncio task that a handler caused and that
    the boundary turned into its error (else every later check would see one pending)."""
    task = _running_task()
    if task is not None and task.cancelling() > 0:
        task.uncancel()


async def _call(fn, *args):
    return fn(*args)


class _Started:
    """``task_status`` for ``runtime.serve`` that resolves an asyncio future."""

    def __init__(self, future: asyncio.Future):
        self._future = future

    def started(self, value=None) -> None:
        if not self._future.done():
            self._future.set_result(value)


class Boundary:
    """Runs handlers for one runtime (see the module doc). Built by the runtime.

    Args:
        runtime: what ``ctx`` reaches (tracer, state, streams, queues).
        threads: size of the pool for sync handlers.
    """

    def __init__(self, runtime, *, threads: int = 4):
        self.runtime = runtime
        self.tracer = runtime.tracer
        self.threads = max(1, threads)
        self.host: Host | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._limiter: trio.CapacityLimiter | None = None
        #: Runs edge stopped waiting for (past an HTTP timeout) that have not ended yet.
        self.detached: set[asyncio.Task] = set()
        #: (step, middleware) pairs already told they dropped the handler's answer.
        self._told: set[tuple[str, str]] = set()

    # -- where it runs ----------------------------------------------------------------------

    async def run_for(self, step, trigger, fn: Callable, *args, finish=None) -> Any:
        """Run the coroutine function ``fn(*args)`` on the loop ``step``'s handlers run on, from
        either loop (the one place that decides): :meth:`invoke` runs a handler there, the queue
        service drains a subscription there, one hop per burst."""
        here = current_library()
        host = self.host
        if host is not None:
            if step.runtime == "trio":
                if here == "asyncio":
                    return await host.run_trio(fn, *args)
            elif here == "trio" and (  # async handlers, and what must run around a sync one
                    step.call is None or step.call.is_async or finish is not None
                    or getattr(trigger, "condition", None) is not None):
                # (a bare sync handler stays: its thread can be started from either loop)
                return await host.run_asyncio(fn, *args)
        return await fn(*args)

    async def invoke(self, step, trigger, input: Any, *, trace_id: str, parent: str | None = None,
                     ctx: Context | None = None, finish: Callable | None = None,
                     limit: float | None = None, deadline: float | None = None) -> tuple[Any, Context]:
        """Run ``step``'s handler for ``trigger`` once, on the loop it belongs to, from either loop.

        ``finish(result)`` is given when the invocation serves an HTTP request: the trigger's
        middleware then run around the handler (outermost first), and ``finish`` turns the
        result into what the caller needs inside the boundary (the response, so a result that
        cannot be sent is this invocation's error). Without it (queue, cron, ``ctx.invoke``,
        ``edge.testing``'s ``app.run``) the handler alone runs.

        Returns:
            ``(result, ctx)``; ``ctx.outbox`` holds what a queued invocation enqueued.
        Raises:
            Skipped: the trigger's condition was false.
            HandlerError: the handler, its condition or its writes failed; already logged.
            Retry: the handler asked for a retry (queue handlers).
            TimeoutError: it did not finish within ``limit`` seconds (it was cancelled), or it
                returned later than that (it blocked the loop, or swallowed the cancellation).
        """
        if limit is not None and limit != float("inf"):
            return await self._bounded(limit, self.invoke, step, trigger, input, trace_id=trace_id,
                                       parent=parent, ctx=ctx, finish=finish,
                                       deadline=time.perf_counter() + limit)
        return await self.run_for(step, trigger, self.run, step, trigger, input, trace_id, parent, ctx, finish,
                                  deadline, finish=finish)

    async def _bounded(self, limit: float, fn: Callable, *args, **kw) -> Any:
        """``await fn(*args, **kw)``, cancelled after ``limit`` seconds: TimeoutError."""
        if current_library() == "trio":
            with trio.move_on_after(limit):
                return await fn(*args, **kw)
            raise TimeoutError(f"did not finish within {limit:g} s")
        # On asyncio the run gets a task of its own, so that the caller has its answer on time
        # even from a handler that swallows its cancellation: that one runs on, as a sync
        # handler's thread does (the boundary logs how it ends; shutdown waits for it).
        task = asyncio.get_running_loop().create_task(fn(*args, **kw))
        try:
            done, _ = await asyncio.wait((task,), timeout=limit)
        except asyncio.CancelledError:  # the caller was (the runtime stopping, a client gone)
            cancel(task)
            self.detach(task)  # first: shutdown's wait_detached must see it however this wait ends
            await asyncio.wait((task,), timeout=CANCEL_GRACE)
            raise
        if not done:
            cancel(task)
            self.detach(task)
            raise TimeoutError(f"did not finish within {limit:g} s")
        return task.result()

    def detach(self, task: asyncio.Task) -> None:
        """Stop waiting for ``task``, a run edge cancelled: until it ends it is in
        :attr:`detached` (shutdown waits for it), and its outcome is taken (the boundary has
        logged it; asyncio would say it again, "exception was never retrieved")."""
        self.detached.add(task)
        task.add_done_callback(self._forget_detached)

    def _forget_detached(self, task: asyncio.Task) -> None:
        self.detached.discard(task)
        if not task.cancelled():
            task.exception()

    async def wait_detached(self, timeout: float) -> None:
        """On shutdown: give the runs that outlived their HTTP timeout ``timeout`` seconds to
        end, then cancel them again and wait up to :data:`CANCEL_GRACE` (before the store
        closes under them)."""
        if self.detached:
            await asyncio.wait(set(self.detached), timeout=max(0.0, timeout))
        if self.detached:
            for task in self.detached:
                cancel(task)
            await asyncio.wait(set(self.detached), timeout=CANCEL_GRACE)

    # -- the guarded run -------------------------------------------------------------------

    async def run(self, step, trigger, input, trace_id, parent=None, ctx=None, finish=None, deadline=None):
        """The boundary itself, on the loop the caller is on (see :meth:`invoke`). Kept flat: it
        is on every request's path. ``deadline`` (``time.perf_counter()``): a run that returns
        after it failed all the same (:class:`LateReturn`)."""
        span_id = new_id()
        if ctx is None:
            queued = trigger is not None and trigger.type in QUEUED_TYPES
            ctx = Context(self.runtime, step, trigger, trace_id, span_id, input, [] if queued else None)
        else:
            ctx.span_id = span_id  # a ctx.invoke child: its own invokes name this span as parent
        start = time.time()
        t0 = time.perf_counter()
        status, error, error_id = "ok", None, None
        token = current_invocation.set(ctx)
        try:
            condition = getattr(trigger, "condition", None)
            if condition is not None and not await self.call_user(condition, input, ctx):
                status = "skipped"
                raise Skipped()
            call = step.call
            middleware = getattr(trigger, "middleware", None) if finish is not None else None
            if middleware:
                result = await self.call_through(middleware, step, input, ctx)
            elif call is not None and call.is_async:  # the common case: no coroutine layer more
                result = await call.fn(*call.args(input, ctx))
            else:
                result = await self.call(step, input, ctx)
            if type(result) is not dict and hasattr(result, "__await__"):
                # `return other()` without its await: awaited, as JavaScript does with a promise an
                # async function returns (a tester: on a queue the work was lost, acked as done)
                result = await result
            if finish is not None:
                result = finish(result)
            pending = ctx.pending
            while pending:  # writes the handler started are durable; one it never awaited
                done = pending.pop()  # that failed fails the invocation (tasks may add more)
                if not done.observed:
                    await done.wait()
            if deadline is not None and time.perf_counter() > deadline:
                status, error = "error", "returned after its timeout"
                raise LateReturn()
            return result, ctx
        except (Skipped, LateReturn):
            raise
        except HandlerError as exc:  # a ctx.invoke callee failed: already logged
            status, error, error_id = "error", str(exc), exc.error_id
            raise
        except Retry:  # raised on purpose (queue handlers): not an error, not logged
            status, error = "retry", "Retry"
            raise
        except BaseException as exc:
            if cancelled_from_outside(exc, ctx.caller is not None):  # a timeout, the runtime stopping: not the handler's doing
                status, error = "error", "cancelled"
                raise
            if isinstance(exc, RequestBodyError):  # the client broke the body it was sending
                status, error = "error", f"{type(exc).__name__}: {exc}"
                raise HandlerError(exc, None) from exc
            if isinstance(exc, StorageFull):
                # Not the handler's fault, and the store says it once (and again once space is
                # back): a traceback per request and per queue retry filled the journal, often
                # on the same full card (a tester: 27 MB of log in 20 s).
                status, error = "error", f"StorageFull: {exc}"
                raise HandlerError(exc, None) from exc
            # Anything else the handler raised is its outcome, SystemExit, KeyboardInterrupt
            # (edge handles SIGINT itself: Python never raises it into a handler),
            # GeneratorExit and a CancelledError of its own making included.
            if isinstance(exc, asyncio.CancelledError):
                _uncancel()  # it cancelled itself (or another task did): that request is served
            status, error_id = "error", new_id(6)
            error = describe(exc)
            if isinstance(exc, BadResult):  # what was wrong with the result says it all
                self.tracer.log("error", f"{step.name}: {exc} (error_id {error_id})", trace_id=trace_id,
                                step=step.name, flows=step.flows, data={"error_id": error_id})
            else:
                data = {"error_id": error_id}
                hint = _hint(step, exc)
                if hint:
                    data["hint"] = hint
                self.tracer.exception(
                    f"{step.name} failed: {describe(exc, HEADLINE_CHARS)} (error_id {error_id})", exc,
                    trace_id=trace_id, step=step.name, flows=step.flows, data=data,
                )
            raise HandlerError(exc, error_id) from exc
        finally:
            current_invocation.reset(token)
            self.tracer.record_span(Span(  # positional: a keyword call costs more on every request
                trace_id, span_id, step.name, trigger.type if trigger is not None else "invoke", start,
                (time.perf_counter() - t0) * 1000, status, error, error_id, parent,
            ))

    async def call(self, step, input, ctx) -> Any:
        """Call the handler by its signature; a sync handler runs in the thread pool."""
        call = step.call
        if call is None:
            from .errors import ConfigError

            raise ConfigError(f"{step.file}: step {step.name!r} has no handler")
        fn, args = call.fn, call.args(input, ctx)
        if call.is_async:
            return await fn(*args)
        if self.host is None:  # in-process on a mock clock: deterministic, inline
            result = fn(*args)
        else:
            result = await self.in_thread(fn, *args, on_late=lambda exc: self._failed_late(step, ctx, exc))
        if hasattr(result, "__await__"):  # a sync function that returned an awaitable
            result = await result
        return result

    def _failed_late(self, step, ctx, exc: BaseException) -> None:
        """A sync handler's failure after its caller stopped waiting (its timeout): said once,
        from the loop (this runs in the handler's thread)."""
        error_id = new_id(6)
        message = (f"{step.name} failed in the background, after its timeout or its caller gave up: "
                   f"{describe(exc, HEADLINE_CHARS)} (error_id {error_id})")
        self.host.loop.call_soon_threadsafe(functools.partial(
            self.tracer.exception, message, exc, trace_id=ctx.trace_id, step=step.name, flows=step.flows,
            data={"error_id": error_id}))

    async def call_through(self, middleware, step, input, ctx) -> Any:
        """Call the handler through HTTP middleware (``fn(req, ctx, next)``, outermost first).
        A sync middleware runs in the pool (see :meth:`call_user`); its ``next()`` runs the rest
        of the chain on the loop and returns its result to the thread."""
        answers = {}  # level -> what the rest of the chain below it returned

        async def chain(i):
            if i == len(middleware):
                answers[i] = answer = await self.call(step, input, ctx)
                return answer
            fn = middleware[i]
            blocking = self.host is not None and not _is_async(fn)  # (call_user runs it in the pool)
            answers[i] = answer = await self.call_user(
                fn, input, ctx, self._blocking_next(chain, i + 1) if blocking else lambda: chain(i + 1))
            if answer is None and answers.get(i + 1) is not None:
                self._dropped(step, fn, answers[i + 1], ctx)
            return answer

        return await chain(0)

    def _dropped(self, step, fn: Callable, answer: Any, ctx) -> None:
        """Tell, once per middleware, that it called ``next()`` and returned nothing (a tester:
        the client got 204 No Content and nothing said why)."""
        name = getattr(fn, "__name__", None) or type(fn).__name__
        if (step.name, name) in self._told:
            return
        self._told.add((step.name, name))
        status = answer.get("status") if isinstance(answer, dict) else getattr(answer, "status", None)
        was = f" (status {status})" if type(status) is int else ""
        self.tracer.log(
            "warn", f"{step.name}: middleware {name} called next() but returned None, so the client got "
            f"204 No Content instead of the handler's answer{was}; return what next() returns: "
            "`return await next()` in an async middleware, `return next()` in a sync one",
            trace_id=ctx.trace_id, step=step.name, flows=step.flows)

    def _blocking_next(self, chain: Callable, i: int) -> Callable[[], Any]:
        """A sync middleware's ``next``: from its thread, ``chain(i)`` run on the caller's loop
        and its answer; called from async code (a sync wrapper returned an async middleware's
        coroutine, which runs on the loop), ``chain(i)`` to await. What runs below it and is
        sync gets a thread of its own (the pool may be full of middleware waiting for it)."""
        async def below():
            invoked_from_thread.set(True)  # (in this run's own context)
            return await chain(i)

        if current_library() == "trio":
            def next_blocking():
                return chain(i) if in_async() else trio.from_thread.run(below)
        else:
            host = self.host

            def next_blocking():
                return chain(i) if in_async() else host.await_blocking(below, run=thread_run.get())

        return next_blocking

    async def call_user(self, fn: Callable, *args) -> Any:
        """A condition or middleware: a coroutine function awaited on the caller's loop; a
        sync one in the pool, as a sync handler (a tester: on the loop thread it stalled every
        request, escaped its trigger's timeout, and its ``ctx.state.get`` was an awaitable,
        always true: a middleware checking a token let everyone in). What it returns is
        awaited when awaitable."""
        # (no host: in-process on a mock clock, everything inline)
        result = fn(*args) if self.host is None or _is_async(fn) else await self.in_thread(fn, *args)
        while hasattr(result, "__await__"):  # (an async condition may return a ctx call it did not await)
            result = await result
        return result

    async def in_thread(self, fn: Callable, *args, on_late: Callable | None = None) -> Any:
        """Run a blocking ``fn(*args)`` in the bounded pool, from asyncio or trio, keeping the
        caller's context variables (trace id, the current invocation). A thread cannot be
        stopped: when the caller stops waiting (a timeout) and ``fn`` raises later, the thread
        calls ``on_late(exc)``."""
        state = ThreadRun()
        context = contextvars.copy_context()
        context.run(thread_run.set, state)
        # A thread runs no async library, whatever its caller's (anyio sets sniffio's variable,
        # which the copy carries: ctx.invoke then returned a coroutine to the sync handler).
        context.run(sniffio.current_async_library_cvar.set, None)
        in_context = functools.partial(context.run, fn, *args)

        def run():
            try:
                return in_context()
            except BaseException as exc:
                if state.given_up and on_late is not None:
                    on_late(exc)
                raise

        try:
            return await self._in_pool(run)
        except BaseException:
            state.give_up()
            raise

    async def _in_pool(self, run: Callable) -> Any:
        if invoked_from_thread.get():  # the pool's threads may all be callers waiting for this
            return await _in_own_thread(run)
        if current_library() == "trio":
            if self._limiter is None:
                self._limiter = trio.CapacityLimiter(self.threads)
            return await trio.to_thread.run_sync(run, limiter=self._limiter, abandon_on_cancel=True)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="edge-handler")
        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
