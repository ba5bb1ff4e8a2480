"""The step model: frozen values that discovery produces and the runtime reads.

Everything here is plain data. Fields that hold user objects (handlers, conditions,
middleware, schemas) are typed ``Any``: schemas stay the user's raw object (a JSON Schema
dict, a ``msgspec.Struct`` class or a pydantic class) and are compiled by the runtime.

Triggers form a msgspec tagged union on ``type``; every trigger also exposes ``.type`` as
a class attribute, so ``trigger.type == "http"`` works without isinstance checks.
"""

from __future__ import annotations

import pathlib
from typing import Any, ClassVar, Union

import msgspec

__all__ = [
    "HTTP_METHODS",
    "TRIGGER_TYPES",
    "QueryParam",
    "HttpTrigger",
    "QueueConfig",
    "QueueTrigger",
    "CronTrigger",
    "StateTrigger",
    "StreamTrigger",
    "Trigger",
    "Enqueue",
    "HandlerCall",
    "Step",
    "StreamDef",
    "route_key",
]

# The methods an HTTP trigger may declare, in the order the docs list them.
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

TRIGGER_TYPES = ("http", "queue", "cron", "state", "stream")


def route_key(method: str, path: str) -> tuple[str, str]:
    """The identity of an HTTP route: parameter names do not matter.

    ``route_key("GET", "/todos/:id") == route_key("GET", "/todos/:todo_id")``.
    """
    segments = ["*" if s.startswith(":") else s for s in path.split("/")]
    return method, "/".join(segments)


class QueryParam(msgspec.Struct, frozen=True):
    """A documented query parameter of an HTTP trigger (OpenAPI only; not enforced)."""

    name: str
    description: str = ""


class HttpTrigger(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="http"):
    """Runs the step on ``method path``. ``path`` is in ``/todos/:id`` form."""

    type: ClassVar[str] = "http"
    index: int
    method: str
    path: str
    body_schema: Any = None
    response_schema: dict[int, Any] | None = None
    query_params: tuple[QueryParam, ...] = ()
    middleware: tuple[Any, ...] = ()
    condition: Any = None
    timeout: float | None = None  # seconds the handler (with its middleware) may take; None: no limit

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the path parameters, in order (``("id",)`` for ``/todos/:id``)."""
        return tuple(s[1:] for s in self.path.split("/") if s.startswith(":"))

    @property
    def route_key(self) -> tuple[str, str]:
        return route_key(self.method, self.path)

    def info(self) -> dict[str, Any]:
        """What ``ctx.trigger`` shows for this trigger."""
        return {"type": "http", "index": self.index, "method": self.method, "path": self.path}


class QueueConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Delivery settings of one queue subscription."""

    type: str = "standard"  # "standard" | "fifo"
    max_retries: int = 3  # retries after the first failure; then the dead-letter queue
    backoff_type: str = "exponential"  # "exponential" | "fixed"
    backoff_delay_ms: int = 1000
    visibility_timeout: float | None = None  # seconds a lease lasts; None: runtime default
    delay_seconds: float = 0
    concurrency: int = 10
    timeout: float | None = None  # seconds the handler may run; None: no limit


class QueueTrigger(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="queue"):
    """Runs the step for every message on ``topic`` (each step gets its own copy)."""

    type: ClassVar[str] = "queue"
    index: int
    topic: str
    input: Any = None
    config: QueueConfig = QueueConfig()
    condition: Any = None

    def info(self) -> dict[str, Any]:
        return {"type": "queue", "index": self.index, "topic": self.topic}


class CronTrigger(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="cron"):
    """Runs the step on a schedule. ``expression`` has 5, 6 or 7 fields (6/7: seconds first)."""

    type: ClassVar[str] = "cron"
    index: int
    expression: str
    timezone: str | None = None  # IANA name; None: the machine's local zone
    missed: str = "skip"  # "skip" | "once"
    condition: Any = None

    def info(self) -> dict[str, Any]:
        return {"type": "cron", "index": self.index, "expression": self.expression}


class StateTrigger(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="state"):
    """Runs the step when state changes, optionally only in ``group`` / for ``key``."""

    type: ClassVar[str] = "state"
    index: int
    group: str | None = None
    key: str | None = None
    condition: Any = None

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "state", "index": self.index}
        if self.group is not None:
            out["group"] = self.group
        if self.key is not None:
            out["key"] = self.key
        return out


class StreamTrigger(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="stream"):
    """Runs the step when an item of ``stream_name`` changes (optionally one group / item)."""

    type: ClassVar[str] = "stream"
    index: int
    stream_name: str
    group_id: str | None = None
    item_id: str | None = None
    condition: Any = None

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "stream", "index": self.index, "streamName": self.stream_name}
        if self.group_id is not None:
            out["groupId"] = self.group_id
        if self.item_id is not None:
            out["itemId"] = self.item_id
        return out


Trigger = Union[HttpTrigger, QueueTrigger, CronTrigger, StateTrigger, StreamTrigger]


class Enqueue(msgspec.Struct, frozen=True):
    """A topic a step may publish to (``label``/``conditional`` only feed the diagram)."""

    topic: str
    label: str | None = None
    conditional: bool = False


class HandlerCall(msgspec.Struct, frozen=True):
    """How to call one handler, worked out once from its signature (see ``edge.steps.call``).

    ``arity`` is how many positional arguments it takes (0, 1 or 2); ``ctx_only`` means a
    one-argument handler receives ``ctx`` instead of the input (Motia 0.x cron handlers).
    """

    fn: Any
    is_async: bool
    arity: int
    ctx_only: bool = False

    def args(self, input: Any, ctx: Any) -> tuple:
        """The positional arguments of one call."""
        arity = self.arity
        return (input, ctx) if arity == 2 else ((ctx if self.ctx_only else input),) if arity == 1 else ()


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """A discovered step: its normalised config, its handler and where it came from."""

    name: str
    description: str | None = None
    triggers: tuple[Trigger, ...] = ()
    enqueues: tuple[Enqueue, ...] = ()
    virtual_enqueues: tuple[Enqueue, ...] = ()
    virtual_subscribes: tuple[str, ...] = ()
    flows: tuple[str, ...] = ()
    include_files: tuple[str, ...] = ()
    handler: Any = None  # None only for Motia 0.x "noop" steps
    file: str = ""  # path relative to the project, with "/" separators
    module: str = ""  # e.g. "steps.todos.create_step"
    path: pathlib.Path | None = None  # absolute path of the file
    #: "1.0" (triggers), "0.x" (Motia 0.x "type" configs) or "transitional" (triggers next to
    #: Motia 0.x's "emits", as the published ``motia create`` templates wrote them)
    dialect: str = "1.0"
    call: HandlerCall | None = None  # the calling convention, computed once
    runtime: str = "asyncio"  # where an async handler runs: "asyncio" (default) or "trio"
    #: True when the handler takes streaming HTTP args (``HttpStreamArgs`` / Motia's
    #: ``MotiaHttpArgs``): it writes its own response (edge.server.streaming)
    http_stream: bool = False
    #: the ``name`` the config gave, when ``name`` had to be made unique: Motia 0.x keyed steps
    #: by file, so two 0.x files may share a name; each then runs as ``"<name> (<file>)"``
    label: str = ""
    #: the triggers' compiled ``bodySchema`` / ``input`` schemas (``edge.schema.Schema``), by
    #: trigger index: compiled at discovery, so a bad schema is that file's error
    schemas: dict = msgspec.field(default_factory=dict)

    @property
    def legacy(self) -> bool:
        """Written for Motia's 0.x runtime (either 0.x dialect): 0.x behaviours apply (what
        ``ctx.state.get`` answers, one-argument cron handlers getting ``ctx``)."""
        return self.dialect != "1.0"

    @property
    def display_name(self) -> str:
        """The name the user wrote (what logs show)."""
        return self.label or self.name

    def triggers_of(self, type: str) -> tuple[Trigger, ...]:
        """The triggers of one type ("http", "queue", ...), in declaration order."""
        return tuple(t for t in self.triggers if t.type == type)

    @property
    def http_triggers(self) -> tuple[HttpTrigger, ...]:
        return self.triggers_of("http")  # type: ignore[return-value]

    @property
    def queue_triggers(self) -> tuple[QueueTrigger, ...]:
        return self.triggers_of("queue")  # type: ignore[return-value]

    @property
    def cron_triggers(self) -> tuple[CronTrigger, ...]:
        return self.triggers_of("cron")  # type: ignore[return-value]

    @property
    def state_triggers(self) -> tuple[StateTrigger, ...]:
        return self.triggers_of("state")  # type: ignore[return-value]

    @property
    def stream_triggers(self) -> tuple[StreamTrigger, ...]:
        return self.triggers_of("stream")  # type: ignore[return-value]

    @property
    def subscribes(self) -> tuple[str, ...]:
        """Topics of the step's queue triggers."""
        return tuple(t.topic for t in self.queue_triggers)

    @property
    def enqueue_topics(self) -> frozenset[str]:
        """Topics the step may publish to; empty means "any" (no list given)."""
        return frozenset(e.topic for e in self.enqueues)

    @property
    def is_noop(self) -> bool:
        """True for steps that only appear in the flow diagram (no triggers)."""
        return not self.triggers


class StreamDef(msgspec.Struct, frozen=True, kw_only=True):
    """A stream declared in a ``*_stream.py`` file."""

    name: str
    schema: Any = None
    storage_type: str = "default"  # "default" (LMDB) | "memory" (RAM only)
    can_access: Any = None  # fn(subscription, auth_context) -> bool, sync or async
    description: str | None = None
    on_join: Any = None  # Motia 1.0 hooks, kept for the stream server
    on_leave: Any = None
    file: str = ""
    module: str = ""
    path: pathlib.Path | None = None
