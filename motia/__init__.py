"""``motia``: run Motia 1.0 Python steps on edge, unchanged.

``from motia import http, queue, cron, state, stream, ApiRequest, ApiResponse, FlowContext,
Stream, stateManager, logger, enqueue, step, multi_trigger_step, ...`` resolves to this
package, which ships inside the edge distribution (and is bundled by ``edge build``). Each
name maps onto edge's native API: the handler gets edge's request and ctx, the helpers build
edge's triggers, and the module-level ``logger``, ``enqueue``, ``stateManager`` and
``Stream("name")`` act for the invocation that is running, called synchronously (1.0.4) or
awaited (the release candidates). What is not supported, and why: docs/motia.md.

Install edge *instead of* the ``motia`` package from PyPI (both provide ``motia``; that one
needs the iii engine).
"""

from . import types
from ._log import Logger, enqueue, logger
from ._state import StateManager, stateManager
from ._steps import MultiTriggerStepBuilder, StepBuilder, StepDefinition, multi_trigger_step, step
from ._streams import Stream
from ._triggers import api, cron, http, queue, state, stream
from ._types import (
    ApiMiddleware,
    ApiRequest,
    ApiResponse,
    ApiRouteMethod,
    ApiStreamRequest,
    ApiTrigger,
    CronTrigger,
    Enqueue,
    Enqueuer,
    FlowContext,
    HandlerConfig,
    InfrastructureConfig,
    MotiaHttpArgs,
    MotiaHttpRequest,
    MotiaHttpResponse,
    QueryParam,
    QueueConfig,
    QueueTrigger,
    StateTrigger,
    StateTriggerInput,
    Step,
    StepConfig,
    StreamAuthInput,
    StreamAuthResult,
    StreamConfig,
    StreamEvent,
    StreamSubscription,
    StreamTrigger,
    StreamTriggerInput,
    TriggerCondition,
    TriggerConfig,
    TriggerInfo,
    TriggerInput,
)
from .guards import (
    get_api_triggers,
    get_cron_triggers,
    get_queue_triggers,
    get_state_triggers,
    get_stream_triggers,
    is_api_step,
    is_api_trigger,
    is_cron_step,
    is_cron_trigger,
    is_queue_step,
    is_queue_trigger,
    is_state_step,
    is_state_trigger,
    is_stream_step,
    is_stream_trigger,
)

__all__ = [
    # triggers
    "http", "api", "queue", "cron", "state", "stream",
    # step builders
    "step", "StepDefinition", "StepBuilder", "multi_trigger_step", "MultiTriggerStepBuilder",
    # types
    "ApiMiddleware", "ApiRequest", "ApiResponse", "ApiRouteMethod", "ApiStreamRequest", "ApiTrigger",
    "CronTrigger", "Enqueue", "Enqueuer", "FlowContext", "HandlerConfig", "InfrastructureConfig",
    "MotiaHttpArgs", "MotiaHttpRequest", "MotiaHttpResponse", "QueryParam", "QueueConfig", "QueueTrigger",
    "StateTrigger", "StateTriggerInput", "Step", "StepConfig", "StreamAuthInput", "StreamAuthResult",
    "StreamConfig", "StreamEvent", "StreamSubscription", "StreamTrigger", "StreamTriggerInput",
    "TriggerCondition", "TriggerConfig", "TriggerInfo", "TriggerInput",
    # module-level objects
    "logger", "Logger", "enqueue", "Stream", "StateManager", "stateManager",
    # guards
    "is_api_trigger", "is_queue_trigger", "is_cron_trigger", "is_state_trigger", "is_stream_trigger",
    "is_api_step", "is_queue_step", "is_cron_step", "is_state_step", "is_stream_step",
    "get_api_triggers", "get_queue_triggers", "get_cron_triggers", "get_state_triggers", "get_stream_triggers",
    "types",
]
