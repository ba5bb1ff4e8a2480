"""Motia 1.0's types, mapped onto edge's own.

The request, response, context, trigger info and trigger inputs *are* edge's classes (a Motia
handler gets exactly what an edge handler gets); the config-shaped types (``QueueConfig``,
``StreamConfig``, ``StepConfig``, the trigger classes, ...) are small plain classes with
Motia's fields and ``model_dump()``, which edge's config reader understands. Every generic
Motia type is subscriptable (``ApiRequest[Any]``, ``FlowContext[Any]``), because step
files evaluate such annotations at import. pydantic is not needed.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Awaitable, Callable, Generic, Literal, TypeVar, Union

from edge._state import StateEvent
from edge.api import ApiRequest, ApiResponse, HttpStreamArgs, ResponseStream
from edge.context import Context, TriggerInfo
from edge.streams.records import ChangeEvent
from edge.streams.records import StreamEvent as _StreamTriggerEvent

__all__ = [
    "ApiRequest", "ApiResponse", "MotiaHttpArgs", "MotiaHttpRequest", "MotiaHttpResponse", "ApiStreamRequest",
    "FlowContext", "TriggerInfo", "StateTriggerInput", "StreamTriggerInput", "StreamEvent",
    "QueueConfig", "HandlerConfig", "InfrastructureConfig", "Enqueue", "QueryParam",
    "ApiTrigger", "QueueTrigger", "CronTrigger", "StateTrigger", "StreamTrigger", "TriggerConfig",
    "StepConfig", "Step", "StreamConfig", "StreamSubscription", "StreamAuthInput", "StreamAuthResult",
    "ApiMiddleware", "ApiRouteMethod", "Enqueuer", "TriggerCondition", "TriggerInput",
]

TEnqueueData = TypeVar("TEnqueueData")

# -- what handlers receive: edge's own objects -------------------------------------------------

#: ``args: MotiaHttpArgs[Any]``: a streaming HTTP handler's ``request`` and ``response``.
MotiaHttpArgs = HttpStreamArgs
#: The name some Motia 1.0 builds gave ``MotiaHttpArgs``.
ApiStreamRequest = HttpStreamArgs
#: ``args.request``: the request, with ``method`` and ``request_body`` (a stream).
MotiaHttpRequest = ApiRequest
#: ``args.response``: ``await status()``, ``await headers()``, ``writer.stream.write()``, ``close()``.
MotiaHttpResponse = ResponseStream
#: A state trigger's input: ``group_id``, ``item_id``, ``old_value``, ``new_value`` (+ edge's ``event_type``).
StateTriggerInput = StateEvent
#: A stream trigger's input: ``stream_name``, ``group_id``, ``id``, ``event.type``, ``event.data``.
StreamTriggerInput = _StreamTriggerEvent
#: ``input.event`` of a stream trigger: ``type`` ("create" | "update" | "delete") and ``data``.
StreamEvent = ChangeEvent


class FlowContext(Generic[TEnqueueData], metaclass=abc.ABCMeta):
    """What handlers get as ``ctx``: edge's context (``edge.context.Context``) is one.

    ``ctx.logger``, ``await ctx.enqueue({...})`` (``ctx.emit``), ``ctx.state``, ``ctx.streams``,
    ``ctx.trace_id``, ``ctx.trigger`` (``type``, ``index``, ``path``, ``method``, ``topic``,
    ``expression``), ``ctx.is_api()`` / ``is_queue()`` / ``is_cron()`` / ``is_state()`` /
    ``is_stream()``, ``ctx.get_data()``, ``await ctx.match({...})``.
    """


FlowContext.register(Context)


# -- config-shaped types ---------------------------------------------------------------------

class _Model:
    """Keyword construction, ``model_dump()`` and ``model_validate()``, as Motia's pydantic models."""

    _ALIASES: dict[str, str] = {}

    def model_dump(self, *, by_alias: bool = False, exclude_none: bool = False, **_: Any) -> dict:
        out = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if exclude_none and value is None:
                continue
            out[self._ALIASES.get(field.name, field.name) if by_alias else field.name] = value
        return out

    @classmethod
    def model_validate(cls, data: Any):
        if isinstance(data, cls):
            return data
        if hasattr(data, "model_dump"):
            data = data.model_dump()
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        back = {alias: name for name, alias in cls._ALIASES.items()}
        return cls(**{back.get(k, k): v for k, v in dict(data).items() if back.get(k, k) in names})


@dataclasses.dataclass
class QueueConfig(_Model):
    """Delivery settings of a queue trigger (``queue("t", config=QueueConfig(type="fifo"))``)."""

    type: Literal["fifo", "standard"] = "standard"
    max_retries: int = 3
    visibility_timeout: int = 30
    delay_seconds: int = 0
    concurrency: int | None = None
    backoff_type: str | None = None
    backoff_delay_ms: int | None = None
    _ALIASES = {"max_retries": "maxRetries", "visibility_timeout": "visibilityTimeout",
                "delay_seconds": "delaySeconds", "backoff_type": "backoffType",
                "backoff_delay_ms": "backoffDelayMs"}


@dataclasses.dataclass
class HandlerConfig(_Model):
    """Handler limits of the release candidates' ``infrastructure`` (edge uses ``timeout``)."""

    ram: int = 128
    cpu: int | None = None
    timeout: int = 30


@dataclasses.dataclass
class InfrastructureConfig(_Model):
    """``infrastructure={"handler": {...}, "queue": {...}}`` of the release candidates."""

    handler: HandlerConfig | None = None
    queue: QueueConfig | None = None


@dataclasses.dataclass
class Enqueue(_Model):
    topic: str
    label: str | None = None
    conditional: bool = False


@dataclasses.dataclass
class QueryParam(_Model):
    name: str
    description: str = ""


ApiRouteMethod = Literal["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
TriggerInput = Any
TriggerCondition = Callable[[Any, Any], Union[bool, Awaitable[bool]]]
Enqueuer = Callable[[Any], Awaitable[None]]
ApiMiddleware = Callable[[Any, Any, Callable[[], Awaitable[Any]]], Awaitable[Any]]


@dataclasses.dataclass
class ApiTrigger(_Model):
    path: str
    method: str
    condition: Any = None
    middleware: list | None = None
    body_schema: Any = None
    response_schema: dict | None = None
    query_params: list | None = None
    type: str = "http"
    _ALIASES = {"body_schema": "bodySchema", "response_schema": "responseSchema", "query_params": "queryParams"}


@dataclasses.dataclass
class QueueTrigger(_Model):
    topic: str
    condition: Any = None
    input: Any = None
    config: Any = None
    infrastructure: Any = None
    type: str = "queue"


@dataclasses.dataclass
class CronTrigger(_Model):
    expression: str
    condition: Any = None
    type: str = "cron"


@dataclasses.dataclass
class StateTrigger(_Model):
    condition: Any = None
    type: str = "state"


@dataclasses.dataclass
class StreamTrigger(_Model):
    stream_name: str
    group_id: str | None = None
    item_id: str | None = None
    condition: Any = None
    type: str = "stream"
    _ALIASES = {"stream_name": "streamName", "group_id": "groupId", "item_id": "itemId"}


TriggerConfig = Union[QueueTrigger, ApiTrigger, CronTrigger, StateTrigger, StreamTrigger, dict]


@dataclasses.dataclass
class StepConfig(_Model):
    """A step's ``config`` as an object (a plain dict works the same)."""

    name: str
    triggers: list = dataclasses.field(default_factory=list)
    enqueues: list = dataclasses.field(default_factory=list)
    virtual_enqueues: list | None = None
    virtual_subscribes: list | None = None
    description: str | None = None
    flows: list | None = None
    include_files: list | None = None
    infrastructure: Any = None
    _ALIASES = {"virtual_enqueues": "virtualEnqueues", "virtual_subscribes": "virtualSubscribes",
                "include_files": "includeFiles"}


@dataclasses.dataclass
class Step(_Model):
    file_path: str
    config: StepConfig


@dataclasses.dataclass
class StreamConfig(_Model):
    """A stream's config, for a ``*_stream.py`` (``config = StreamConfig(...)``) or ``Stream(...)``.

    ``base_config={"storageType": "memory"}`` keeps it in RAM; edge also reads ``can_access``.
    """

    name: str
    description: str | None = None
    schema: Any = None
    base_config: dict | None = None
    on_join: Any = None
    on_leave: Any = None
    can_access: Any = None
    _ALIASES = {"base_config": "baseConfig", "on_join": "onJoin", "on_leave": "onLeave", "can_access": "canAccess"}


@dataclasses.dataclass
class StreamSubscription(_Model):
    group_id: str
    id: str | None = None


@dataclasses.dataclass
class StreamAuthInput(_Model):
    headers: dict
    path: str
    query_params: dict
    addr: str


@dataclasses.dataclass
class StreamAuthResult(_Model):
    authorized: bool
    context: Any = None
