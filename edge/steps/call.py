"""Calling handlers by their signature: ``(input, ctx)``, ``(input)``, ``()``, sync or async.

The convention is worked out once (:func:`prepare_handler`, stored on ``Step.call`` by
discovery); :func:`call_handler` then only branches on two small ints per call.

:func:`call_handler` calls a sync handler inline: it is for tests and tools. The runtime calls
handlers through its boundary (``edge._boundary``), which runs sync handlers in a thread pool.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from ..errors import ConfigError
from .model import HandlerCall, Step

__all__ = ["prepare_handler", "call_handler"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _is_async(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)
    return not inspect.isfunction(fn) and not inspect.ismethod(fn) and inspect.iscoroutinefunction(call)


def prepare_handler(fn: Any, *, cron_ctx_only: bool = False, where: str = "handler") -> HandlerCall:
    """Work out how to call ``fn``.

    Args:
        fn: the handler (any callable).
        cron_ctx_only: a one-argument handler receives ``ctx`` instead of the input
            (Motia 0.x cron steps: ``async def handler(context)``).
        where: prefix for error messages, e.g. ``"steps/a_step.py: handler"``.

    Raises:
        ConfigError: ``fn`` is not callable, or needs more than (input, ctx).
    """
    if not callable(fn):
        raise ConfigError(f"{where}: expected a function handler(input, ctx), got {type(fn).__name__}")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature: give them both
        return HandlerCall(fn, _is_async(fn), 2)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return HandlerCall(fn, _is_async(fn), 2)
    positional = [p for p in params if p.kind in _POSITIONAL]
    required = [p.name for p in positional if p.default is inspect.Parameter.empty]
    kw_required = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty]
    if len(required) > 2 or kw_required:
        names = ", ".join(required + [f"*, {n}" for n in kw_required])
        raise ConfigError(f"{where}: takes ({names}); a handler is called as handler(input, ctx), handler(input) or handler()")
    arity = min(len(positional), 2)
    return HandlerCall(fn, _is_async(fn), arity, ctx_only=cron_ctx_only and arity == 1)


async def call_handler(target: Step | HandlerCall | Any, input: Any, ctx: Any, *, cron_ctx_only: bool = False) -> Any:
    """Call a step's handler (or a prepared/plain callable) and return its result.

    Args:
        target: a :class:`Step` (uses its precomputed ``call``), a :class:`HandlerCall`,
            or a plain callable (its signature is inspected on every call; prefer the others).
        input: what the trigger delivers (request, message data, None for cron, event).
        ctx: the context.
        cron_ctx_only: for plain callables only; Steps and HandlerCalls already know.
    """
    if isinstance(target, Step):
        call = target.call
        if call is None:
            raise ConfigError(f"{target.file}: step {target.name!r} has no handler")
    elif isinstance(target, HandlerCall):
        call = target
    else:
        call = prepare_handler(target, cron_ctx_only=cron_ctx_only)
    result = call.fn(*call.args(input, ctx))
    if call.is_async or inspect.isawaitable(result):
        return await result
    return result
