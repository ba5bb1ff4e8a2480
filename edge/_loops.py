"""Waiting that works on either loop: asyncio (handlers, HTTP), trio (services) or a thread.

edge runs two event loops on one thread (asyncio hosts Granian and the handlers, trio runs as
its guest and owns the services), plus a small pool of threads for sync handlers. The store,
the queue committer and the streams are shared by all of them, so the few places that wait
for "this write is durable" wait through :class:`Completion`, which asks sniffio which
library the caller runs under and parks it the way that library understands.

``Completion.set`` is called on the loop thread (both loops live there); a completion set from
another thread must go through the host's ``call_soon_threadsafe`` (the store does that).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, Callable

import sniffio
import trio

__all__ = ["Completion", "Pending", "Ready", "answer", "maybe_await", "current_library", "checkpoint", "in_async", "track",
           "current_invocation", "invoked_from_thread", "thread_run", "current_caller", "register_host", "host_loop"]

#: The host loop of each thread that runs one (``edge._boundary.Host`` registers it).
_host_loops: dict[int, asyncio.AbstractEventLoop] = {}
_sniffio_thread = sniffio.thread_local  # trio sets ``.name = "trio"`` while it runs its tasks
_sniffio_cvar = sniffio.current_async_library_cvar


def register_host(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` this thread's host loop (called on the thread that runs it)."""
    _host_loops[threading.get_ident()] = loop


def host_loop() -> asyncio.AbstractEventLoop | None:
    """This thread's host loop while it runs, else None."""
    loop = _host_loops.get(threading.get_ident())
    return loop if loop is not None and loop.is_running() else None


def current_library() -> str | None:
    """"asyncio", "trio", or None (a plain thread, or no loop at all).

    sniffio's answer, asked cheaply first: on the host loop's thread, outside trio's steps,
    it is asyncio. (sniffio itself asks ``asyncio.current_task()``, whose check of the
    running loop costs a ``getpid(2)`` on Python 3.11: a tenth of a queue message's time.)
    """
    name = _sniffio_thread.name
    if name is not None:
        return name
    name = _sniffio_cvar.get()
    if name is not None:
        return name
    if host_loop() is not None:
        return "asyncio"
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


def in_async() -> bool:
    """True when the caller can ``await`` (it runs in an asyncio or a trio task)."""
    return current_library() is not None


async def maybe_await(value):
    """``await value`` when it is awaitable (user callbacks may be sync or async), else ``value``."""
    if hasattr(value, "__await__"):
        return await value
    return value


async def checkpoint() -> None:
    """Let other tasks of the caller's loop run (``asyncio.sleep(0)`` / trio's checkpoint)."""
    if current_library() == "trio":
        await trio.lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


class Completion:
    """A one-shot result that asyncio tasks, trio tasks and threads can wait for.

    ``set(value)`` / ``fail(error)`` once, on the loop thread; ``await wait()`` from either loop
    or ``wait_blocking()`` from a thread. Waiters that stop waiting (cancelled) do not cancel
    what they waited for.
    """

    __slots__ = ("done", "value", "error", "_waiters", "observed", "blocking")

    def __init__(self):
        self.done = False
        #: Set on the store's writer thread once the write is durable, for a caller that must
        #: block the loop thread on it (``Store.submit(..., blockable=True)``), else None.
        self.blocking: threading.Event | None = None
        #: Someone awaited the result (and so has seen its error, if any).
        self.observed = False
        self.value: Any = None
        self.error: BaseException | None = None
        self._waiters: list[Callable[[], None]] = []

    def set(self, value: Any = None) -> None:
        self._finish(value, None)

    def fail(self, error: BaseException) -> None:
        self._finish(None, error)

    def _finish(self, value, error) -> None:
        if self.done:
            return
        self.done, self.value, self.error = True, value, error
        waiters, self._waiters = self._waiters, []
        for wake in waiters:
            wake()

    def _result(self) -> Any:
        self.observed = True
        if self.error is not None:
            raise self.error
        return self.value

    async def wait(self) -> Any:
        """The value (or raise the error) once set; from an asyncio or a trio task."""
        if self.done:
            return self._result()
        if current_library() == "trio":
            event = trio.Event()
            self._waiters.append(event.set)
            await event.wait()
        else:
            future = (host_loop() or asyncio.get_running_loop()).create_future()

            def wake() -> None:
                if not future.done():
                    future.set_result(None)

            self._waiters.append(wake)
            await future
        return self._result()

    def wait_blocking(self, timeout: float | None = None) -> Any:
        """From a thread that is not the loop thread: block until set."""
        if not self.done:
            event = threading.Event()
            self._waiters.append(event.set)
            if not self.done:
                event.wait(timeout)
        return self._result()


class Pending:
    """What an eager call returns in async code: the work has started (a write is queued for
    the next commit) and ``await`` waits for its result. Not awaiting it loses nothing: the
    boundary waits for every pending write of an invocation before it answers or acks.

    It is a coroutine too (``send``/``throw``/``close``), as Motia's calls were: a tester's
    ``asyncio.create_task(ctx.enqueue(...))`` (and ``TaskGroup.create_task``, trio's
    ``start_soon``) failed with "a coroutine was expected"."""

    __slots__ = ("completion", "_waiting")

    def __init__(self, completion: Completion):
        self.completion = completion
        self._waiting = None  # the wait a task drives through send/throw (made at its first step)

    def __await__(self):
        return self.completion.wait().__await__()

    def __bool__(self):
        raise TypeError(_NOT_A_VALUE)

    def send(self, value):
        if self._waiting is None:
            self._waiting = self.completion.wait()
        return self._waiting.send(value)

    def throw(self, *exc):
        if self._waiting is None:
            self._waiting = self.completion.wait()
        return self._waiting.throw(*exc)

    def close(self) -> None:
        if self._waiting is not None:
            self._waiting.close()


class Ready:
    """An awaitable whose value is already known (reads are synchronous under the hood); a
    coroutine too, as :class:`Pending`."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __await__(self):
        return self.value
        yield  # (never reached: it makes this a generator)

    def __bool__(self):
        raise TypeError(_NOT_A_VALUE)

    def send(self, value):
        raise StopIteration(self.value)

    def throw(self, typ, value=None, traceback=None):
        raise value if value is not None else (typ() if isinstance(typ, type) else typ)

    def close(self) -> None:
        pass


#: Why an awaitable a ctx call returned has no truth (``if ctx.state.get(...)`` without
#: ``await`` was always true: a tester's token check let everyone in).
_NOT_A_VALUE = ("a ctx call in async code returns an awaitable, not its value: `await` it (or, in a sync "
                "function, nothing is needed: there it returns the value)")


#: The invocation running in this task or thread (an ``edge.context.Context``, set by the
#: boundary): its ``trace_id`` is carried into the triggers its writes fire, and its
#: ``pending`` list holds the writes it must wait for before it answers.
current_invocation: contextvars.ContextVar[Any] = contextvars.ContextVar("edge_invocation", default=None)
#: True in what a sync handler's thread started and waits for (its ``ctx.invoke`` callee): a
#: sync callee then gets a thread of its own, since the bounded pool may be full of callers.
invoked_from_thread: contextvars.ContextVar[bool] = contextvars.ContextVar("edge_invoked_from_thread",
                                                                           default=False)
#: In a sync handler's thread: its run (``edge._boundary.ThreadRun``), which says whether its
#: caller still waits for it and holds the ``ctx.invoke`` callees the thread waits for.
thread_run: contextvars.ContextVar[Any] = contextvars.ContextVar("edge_thread_run", default=None)


def answer(value: Any) -> Any:
    """A read's value for the caller: awaitable in async code, plain in a thread."""
    return Ready(value) if in_async() else value


def track(completion: Completion) -> None:
    """Tell the running invocation (if any) to wait for ``completion`` before it answers."""
    invocation = current_invocation.get()
    if invocation is not None:
        pending = invocation.pending
        pending.append(completion)
        n = len(pending)
        if n >= 64 and not n & (n - 1):
            # A long-running handler writes for hours: forget what is done, so the list stays
            # as long as what is still in flight (at each power of two: amortized O(1)). A
            # failure nobody awaited stays: the boundary raises it.
            pending[:] = [d for d in pending if not d.done or (d.error is not None and not d.observed)]


def current_caller() -> tuple[str | None, str | None]:
    """``(trace id, span id)`` of the running invocation (``(None, None)`` outside one): a
    change it makes continues its trace, and the runs that change fires name its span."""
    invocation = current_invocation.get()
    return (None, None) if invocation is None else (invocation.trace_id, invocation.span_id)
