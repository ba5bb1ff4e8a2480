"""The ``ctx`` handed to every handler, and the logger and state views it carries."""

from __future__ import annotations

from typing import Any

__all__ = ["Context", "StepLogger"]


class StepLogger:
    """``ctx.logger``: structured log lines that carry trace id, step and flows."""

    __slots__ = ("_tracer", "_trace_id", "_step", "_flows")

    def __init__(self, tracer, trace_id: str | None, step: str | None, flows=()):
        self._tracer = tracer
        self._trace_id = trace_id
        self._step = step
        self._flows = flows

    def _log(self, level: str, msg: Any, data: Any = None, **extra: Any) -> None:
        if extra:
            data = {**(data if isinstance(data, dict) else ({} if data is None else {"data": data})), **extra}
        self._tracer.log(level, msg, trace_id=self._trace_id, step=self._step, flows=self._flows, data=data)

    def info(self, msg, data=None, **extra):
        self._log("info", msg, data, **extra)

    def warn(self, msg, data=None, **extra):
        self._log("warn", msg, data, **extra)

    warning = warn

    def error(self, msg, data=None, **extra):
        self._log("error", msg, data, **extra)

    def debug(self, msg, data=None, **extra):
        self._log("debug", msg, data, **extra)


class Context:
    """What a handler gets as ``ctx``. One per invocation; cheap to build."""

    __slots__ = ("_runtime", "step", "trigger_model", "trace_id", "logger", "outbox", "_trigger", "span_id")

    def __init__(self, runtime, step, trigger, trace_id: str, span_id: str | None = None):
        self._runtime = runtime
        self.step = step
        self.trigger_model = trigger
        self.trace_id = trace_id
        self.span_id = span_id
        self.logger = StepLogger(runtime.tracer, trace_id, step.name if step else None, step.flows if step else ())
        #: Messages enqueued by this invocation; committed when it succeeds, dropped when it fails.
        self.outbox: list = []
        self._trigger = None

    @property
    def traceId(self) -> str:
        return self.trace_id

    @property
    def flows(self) -> list[str]:
        return list(self.step.flows) if self.step else []

    @property
    def state(self):
        """The state store (``get``, ``set``, ``update``, ``get_group``/``getGroup``/``list``, ...)."""
        return self._runtime.state

    @property
    def streams(self):
        return self._runtime.streams_view(self)

    @property
    def trigger(self) -> dict:
        """``{type, index, path?, method?, topic?, expression?, ...}`` of the trigger that fired."""
        if self._trigger is None:
            model = self.trigger_model  # None when run through ctx.invoke
            self._trigger = model.info() if model is not None else {"type": "invoke", "index": -1}
        return self._trigger

    async def enqueue(self, event: dict) -> None:
        """Publish ``{"topic", "data", "messageGroupId"?}``; delivered when this invocation succeeds."""
        self._runtime.enqueue_from(self, event)

    emit = enqueue

    async def invoke(self, step_name: str, input: Any = None) -> Any:
        """Run another step's handler directly, in this trace; return its result."""
        return await self._runtime.invoke_step(self, step_name, input)

    # 1.0's FlowContext helpers, for steps written against it.
    def is_api(self) -> bool:
        return self.trigger.get("type") == "http"

    def is_queue(self) -> bool:
        return self.trigger.get("type") == "queue"

    def is_cron(self) -> bool:
        return self.trigger.get("type") == "cron"

    def is_state(self) -> bool:
        return self.trigger.get("type") == "state"

    def is_stream(self) -> bool:
        return self.trigger.get("type") == "stream"
