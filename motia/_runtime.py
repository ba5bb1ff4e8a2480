"""How Motia's module-level objects reach the invocation that is running, and how they answer.

``logger``, ``enqueue``, ``stateManager`` and ``Stream("name")`` are module globals in Motia
1.0; they act for whichever handler calls them. edge's boundary sets
``edge.context.current_context`` for every invocation (and sync handlers' threads inherit
it), so these objects look it up on each call.

One call, two dialects. Motia 1.0.4 made these calls synchronous (``todo =
stream.get(...)``), the 1.0 release candidates made them coroutines (``todo = await
stream.get(...)``), and code for both runs on edge unchanged. A call looks at the instruction
its caller runs next: ``await`` (``GET_AWAITABLE``) means the caller awaits the result, and the
call answers with edge's native awaitable (writes join the next group commit; the await returns
once they are durable). Otherwise the call answers at once: reads the value; a ``set`` the item
as it will be stored, its write queued for the next group commit (:func:`write_soon`) without
blocking the loop thread; ``update``, ``delete`` and ``clear``, whose answers depend on what is
stored, block until durable (``Store.write_blocking``: one commit, on the loop thread). A read
(or a write's look at the old value) of something a queued ``set`` of the same invocation
changes first waits for that set to be durable (:func:`settle`), so the code reads its own
writes; the invocation answers (or acks) only once every queued write is durable, and fails if
one failed. A dict or list result is also awaitable, so ``asyncio.gather(...)`` over such calls
works too; a ``None`` result cannot be (``gather`` over a ``get`` of a missing item fails: await
each call instead).

This is the only module of the ``motia`` package that reaches into edge's internals
(``ctx._runtime``, the state store's and streams' write plans).
"""

from __future__ import annotations

import collections
import dis
import functools
import sys
import threading
from types import CodeType
from typing import Any

from edge._loops import Completion, in_async, track
from edge.context import current_context

__all__ = ["MotiaError", "current", "runtime_of", "awaited", "answer", "Then", "AwaitableDict",
           "AwaitableList", "write_soon", "settle"]


class MotiaError(RuntimeError):
    """A ``motia`` object was used where it cannot work (outside a step invocation)."""


def current(what: str):
    """The running invocation's ctx, or a MotiaError that says why there is none."""
    ctx = current_context.get()
    if ctx is None:
        raise MotiaError(
            f"motia.{what}: called outside a step handler; call it from inside handler(input, ctx) "
            f"(or a function the handler calls), not at import time or from a thread the handler did not start"
        )
    return ctx


def runtime_of(ctx):
    """The edge runtime behind a ctx (its state store, streams and queues)."""
    return ctx._runtime


@functools.lru_cache(maxsize=4096)  # a memo keyed by (code, offset): call sites never change
def _awaits_at(code: CodeType, offset: int) -> bool:
    for ins in dis.get_instructions(code):
        if ins.offset > offset:
            return ins.opname == "GET_AWAITABLE"
    return False


def awaited(depth: int = 2) -> bool:
    """Whether the caller ``depth`` frames up awaits the value of the call it is making.

    Only meaningful in async code; a sync handler's thread never awaits.
    """
    if not in_async():
        return False
    frame = sys._getframe(depth)
    return _awaits_at(frame.f_code, frame.f_lasti)


class AwaitableDict(dict):
    """A dict result that may also be awaited (it is already complete). Hashed by identity,
    as ``asyncio.gather`` requires of what it is given."""

    __slots__ = ()
    __hash__ = object.__hash__

    def __await__(self):
        return dict(self)
        yield  # noqa: unreachable - makes this a generator


class AwaitableList(list):
    """A list result that may also be awaited (it is already complete); hashed by identity."""

    __slots__ = ()
    __hash__ = object.__hash__

    def __await__(self):
        return list(self)
        yield  # noqa: unreachable - makes this a generator


def answer(value: Any) -> Any:
    """A completed result for a caller that does not await it."""
    if type(value) is dict:
        return AwaitableDict(value)
    if type(value) is list:
        return AwaitableList(value)
    return value


class Then:
    """Await ``awaitable``, then return ``fn(its value)``; works under asyncio and trio."""

    __slots__ = ("_awaitable", "_fn")

    def __init__(self, awaitable, fn):
        self._awaitable = awaitable
        self._fn = fn

    def __await__(self):
        value = yield from self._awaitable.__await__()
        return self._fn(value)


class WritesSoon:
    """An invocation's queued synchronous writes not yet known durable (``ctx.writes_soon``):
    ``latest`` maps each prefix of what a write changes to the latest such write's durable
    event; ``order`` holds ``(event, touches)`` in call order, to drop entries once durable."""

    __slots__ = ("latest", "order")

    def __init__(self):
        self.latest: dict[tuple, threading.Event] = {}
        self.order: collections.deque = collections.deque()


def write_soon(done: Completion | None, touches: tuple | None) -> None:
    """Make a synchronous call's queued write (``Store.submit(..., blockable=True)``, or None:
    nothing to store) part of the running invocation: it answers only once the write is durable,
    and :func:`settle` finds it by what it changes, ``touches``: ``("state", scope, key)`` or
    ``("stream", name, group, id)`` (None: a memory stream's item, which reads see at once).

    The write is filed under every prefix of ``touches`` (``()``, ``("state",)``, ``("state",
    scope)``, ...), each entry the latest such write: the store commits in call order, so once
    the latest write of a scope is durable, every earlier one is. A settle is then one lookup,
    however many writes the invocation queued, and the entries of writes found durable are
    dropped as new ones come (oldest first: they commit first), so a handler that writes for
    hours keeps only what is in flight."""
    if done is None:
        return
    track(done)
    event = done.blocking
    if touches is None or event is None:  # nothing to read back, or already durable (no writer thread)
        return
    root = current_context.get().root  # shared along a chain of ctx.invoke calls
    soon = root.writes_soon
    if soon is None:
        soon = root.writes_soon = WritesSoon()
    latest, order = soon.latest, soon.order
    while order and order[0][0].is_set():
        durable, done_touches = order.popleft()
        for n in range(len(done_touches) + 1):
            if latest.get(done_touches[:n]) is durable:  # not refiled under a later write
                del latest[done_touches[:n]]
    order.append((event, touches))
    for n in range(len(touches) + 1):
        latest[touches[:n]] = event


def settle(ctx, touches: tuple) -> None:
    """Block the loop thread until the queued writes of invocation ``ctx`` (and of the
    ``ctx.invoke`` callers and callees it shares them with) that change what ``touches`` names
    (a prefix: ``("state", scope)`` is every key of the scope) are durable, so that a read sees
    them. Costs one dict lookup when there are none (the common case: a handler that reads,
    then writes).

    Raises:
        StoreError: the store's writer stopped before committing them.
    """
    soon = ctx.root.writes_soon
    event = None if soon is None else soon.latest.get(touches)
    if event is None:
        return
    if not event.is_set():
        runtime_of(ctx).store.wait_durable(event)
