"""The ``ctx`` handed to every handler, and the logger and trigger info it carries.

Everything on ``ctx`` works from an asyncio handler, a trio handler and a sync handler's thread:
in async code the calls return awaitables, in a thread they return the result (see
``edge._loops``). Writes start at call time, so a Motia 0.x call that is never awaited still
happens; the boundary waits for every write of an invocation before it answers or acks.
"""

from __future__ import annotations

from typing import Any

from ._loops import answer, current_invocation, maybe_await
from .records import Record

__all__ = ["Context", "StepLogger", "TriggerInfo", "current_context"]

#: The invocation running in this task or thread (set by the boundary): what Motia 1.0's
#: module-level ``logger``, ``enqueue``, ``stateManager`` and ``Stream(...)`` act for.
current_context = current_invocation


class StepLogger:
    """``ctx.logger``: structured log lines that carry trace id, step and flows."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: "Context"):
        self._ctx = ctx  # read at log time: building a logger per invocation costs nothing

    def _log(self, level: str, msg: Any, data: Any = None, **extra: Any) -> None:
        if extra:
            data = {**(data if isinstance(data, dict) else ({} if data is None else {"data": data})), **extra}
        ctx = self._ctx
        step = ctx.step
        # hook (issue 12): logs show the name the user wrote (0.x steps sharing a name: Step.label)
        ctx._runtime.tracer.line(level, msg, ctx.trace_id, step.display_name if step else None,
                                 step.flows if step else (), data)

    def info(self, msg, data=None, **extra):
        if extra:
            self._log("info", msg, data, **extra)
            return
        ctx = self._ctx  # the common call, one layer less (Step.display_name inline too)
        step = ctx.step
        if step is None:
            ctx._runtime.tracer.line("info", msg, ctx.trace_id, None, (), data)
        else:
            ctx._runtime.tracer.line("info", msg, ctx.trace_id, step.label or step.name, step.flows, data)

    def warn(self, msg, data=None, **extra):
        self._log("warn", msg, data, **extra)

    warning = warn

    def error(self, msg, data=None, **extra):
        self._log("error", msg, data, **extra)

    def debug(self, msg, data=None, **extra):
        self._log("debug", msg, data, **extra)


class TriggerInfo(Record):
    """``ctx.trigger``: ``type``, ``index`` and the trigger's fields (``path``, ``method``,
    ``topic``, ``expression``, ...), readable as keys and as attributes; fields a trigger
    type does not have read as None (``ctx.trigger.path`` on a queue trigger)."""

    __slots__ = ()
    _ALIASES = {"stream_name": "streamName", "group_id": "groupId", "item_id": "itemId"}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)


def _match_args(fn, input, ctx, cron: bool) -> tuple:
    """The arguments of a ``ctx.match`` handler, by its signature (as every handler's)."""
    from .errors import ConfigError
    from .steps.call import prepare_handler

    try:
        return prepare_handler(fn, cron_ctx_only=cron).args(None if cron else input, ctx)
    except ConfigError:  # not a handler edge could call: let the call itself say why
        return (input,)


#: What ``ctx.trigger`` is inside ``ctx.invoke`` when the callee has no trigger at all.
_INVOKED = TriggerInfo(type="invoke", index=-1)


class Context:
    """What a handler gets as ``ctx``. One per invocation; cheap to build.

    ``outbox`` is a list for invocations that acknowledge a message (queue, state and stream
    triggers): their enqueues commit with the ack, and vanish if the handler fails. It is None
    for HTTP, cron and the runtime's own calls: their enqueues are durable, and delivered, as
    soon as the ``await ctx.enqueue(...)`` returns (Motia's semantics: an API step may enqueue,
    then wait in state for its worker's answer).
    """

    __slots__ = ("_runtime", "step", "trigger_model", "trace_id", "_logger", "outbox", "_trigger",
                 "span_id", "input", "pending", "writes_soon", "caller")

    def __init__(self, runtime, step, trigger, trace_id: str, span_id: str | None = None,
                 input: Any = None, outbox: list | None = None, caller: "Context | None" = None):
        self._runtime = runtime
        self.step = step
        self.trigger_model = trigger
        self.trace_id = trace_id
        self.span_id = span_id
        self.input = input
        self._logger = None  # built on first use: most invocations never log
        self.outbox = outbox
        self._trigger = None
        #: Writes this invocation started (awaited or not): the boundary waits for them.
        self.pending: list = []
        #: Motia 1.0.4's queued synchronous writes not yet known durable (a
        #: ``motia._runtime.WritesSoon``, made by the first). Kept on the invocation a chain of
        #: ``ctx.invoke`` calls started (:attr:`root`): callers and callees share them.
        self.writes_soon = None
        #: The invocation whose ``ctx.invoke`` ran this one, or None.
        self.caller = caller

    @property
    def root(self) -> "Context":
        """The invocation that started this chain of ``ctx.invoke`` calls (itself if none)."""
        ctx = self
        while ctx.caller is not None:
            ctx = ctx.caller
        return ctx

    @property
    def logger(self) -> StepLogger:
        logger = self._logger
        if logger is None:
            logger = self._logger = StepLogger(self)
        return logger

    @property
    def traceId(self) -> str:
        return self.trace_id

    @property
    def flows(self) -> list[str]:
        return list(self.step.flows) if self.step else []

    @property
    def state(self):
        """The state store (``get``, ``set``, ``update``, ``get_group``/``getGroup``/``list``, ...)."""
        # hook (issue 12): steps written for Motia's 0.x runtime get 0.x's answers (edge._legacy)
        if self.step is not None and self.step.dialect != "1.0":
            return self._runtime.legacy_state
        return self._runtime.state

    @property
    def streams(self):
        return self._runtime.streams.view()

    @property
    def trigger(self) -> TriggerInfo:
        """The trigger that fired: ``ctx.trigger.type``, ``ctx.trigger["path"]``, ..."""
        if self._trigger is None:
            model = self.trigger_model
            self._trigger = TriggerInfo(model.info()) if model is not None else _INVOKED
        return self._trigger

    def enqueue(self, event: dict) -> Any:
        """Publish ``{"topic", "data", "messageGroupId"?}`` (see the class doc for when it is
        delivered). Checked at call time: a bad event or an undeclared topic raises here."""
        runtime = self._runtime
        out = runtime.queues.prepare(self, event)
        if self.outbox is not None:
            self.outbox.append(out)
            return answer(None)
        return runtime.publish(out)

    emit = enqueue

    def invoke(self, step_name: str, input: Any = None) -> Any:
        """Run another step's handler directly, in this trace; return its result (awaitable
        in async code; in a sync handler's thread, the result itself)."""
        return self._runtime.call_step(self, step_name, input)

    # Motia 1.0's FlowContext helpers, native too.
    def get_data(self) -> Any:
        """The invocation's data: an HTTP request's body, the message data, the event; None
        for cron (Motia 1.0's ``FlowContext.get_data``)."""
        # hook (issue 12): HTTP -> the body, as Motia's get_data
        if self.trigger_model is not None and self.trigger_model.type == "http":
            return getattr(self.input, "body", self.input)
        return self.input

    def is_api(self) -> bool:
        return self.trigger.type == "http"

    def is_queue(self) -> bool:
        return self.trigger.type == "queue"

    def is_cron(self) -> bool:
        return self.trigger.type == "cron"

    def is_state(self) -> bool:
        return self.trigger.type == "state"

    def is_stream(self) -> bool:
        return self.trigger.type == "stream"

    async def match(self, handlers: dict) -> Any:
        """Run the handler for the trigger that fired: keys ``http`` (or ``api``), ``queue``,
        ``cron``, ``state``, ``stream``, ``default``. Each is called by its signature: Motia
        1.0's take the input (cron handlers nothing), its release candidates' also ``ctx``
        (``(input, ctx)``; cron ``(ctx)``), and a ``default`` that takes no parameter is called
        without one. No match and no default: a ``KeyError`` that lists what was given."""
        kind = self.trigger.type
        names = ("http", "api") if kind == "http" else (kind,)
        handler = next((handlers[n] for n in names if n in handlers), None)
        cron = kind == "cron"
        if handler is None:
            # hook (issue 12): Motia passes the input to "default"; edge's no-argument form stays
            handler, cron = handlers.get("default"), False
        if handler is None:
            raise KeyError(f"ctx.match: no handler for trigger type {kind!r} and no 'default'; "
                           f"given: {', '.join(map(repr, handlers)) or 'none'}")
        return await maybe_await(handler(*_match_args(handler, self.input, self, cron)))
