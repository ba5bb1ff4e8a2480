"""The ``ctx`` handed to every handler, and the logger and state views it carries."""

from __future__ import annotations

from typing import Any

__all__ = ["Context", "StepLogger", "StateView"]


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


class StateView:
    """``ctx.state``: the state store with the names both Motia dialects use."""

    __slots__ = ("_state",)

    def __init__(self, state):
        self._state = state

    async def get(self, group: str, key: str) -> Any:
        return self._state.get_nowait(group, key)

    async def set(self, group: str, key: str, value: Any) -> Any:
        return await self._state.set(group, key, value)

    async def delete(self, group: str, key: str) -> Any:
        return await self._state.delete(group, key)

    async def get_group(self, group: str) -> list[Any]:
        return self._state.get_group_nowait(group)

    getGroup = get_group
    list = get_group

    async def clear(self, group: str) -> int:
        return await self._state.clear(group)

    async def list_groups(self) -> list[str]:
        return self._state.list_groups_nowait()

    listGroups = list_groups

    async def update(self, group: str, key: str, ops) -> Any:
        return await self._state.update(group, key, ops)


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
    def state(self) -> StateView:
        return self._runtime.state_view

    @property
    def streams(self):
        return self._runtime.streams_view(self)

    @property
    def trigger(self) -> dict:
        """``{type, index, path?, method?, topic?, expression?, ...}`` of the trigger that fired."""
        if self._trigger is None:
            self._trigger = describe_trigger(self.trigger_model)
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


def describe_trigger(trigger) -> dict:
    if trigger is None:
        return {"type": "invoke", "index": -1}
    out = {"type": trigger.type, "index": trigger.index}
    for attr, name in (("path", "path"), ("method", "method"), ("topic", "topic"),
                       ("expression", "expression"), ("stream_name", "streamName"),
                       ("group", "group"), ("key", "key")):
        value = getattr(trigger, attr, None)
        if value is not None:
            out[name] = value
    return out
