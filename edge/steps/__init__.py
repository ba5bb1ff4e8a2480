"""Steps: the model, config normalisation (both Motia dialects), discovery, handler calling.

Importing this package runs no user code; :func:`discover` does, and returns a value.
"""

from .call import call_handler, prepare_handler
from .config import normalise_path, parse_step_config, parse_stream_config
from .discovery import DEFAULT_DIRS, Discovery, StepError, compile_trigger_schemas, discover
from .helpers import api, cron, http, queue, state, stream
from .model import (
    HTTP_METHODS,
    TRIGGER_TYPES,
    CronTrigger,
    Enqueue,
    HandlerCall,
    HttpTrigger,
    QueryParam,
    QueueConfig,
    QueueTrigger,
    StateTrigger,
    Step,
    StreamDef,
    StreamTrigger,
    Trigger,
    route_key,
)

__all__ = [
    # model
    "Step",
    "StreamDef",
    "Trigger",
    "HttpTrigger",
    "QueueTrigger",
    "QueueConfig",
    "CronTrigger",
    "StateTrigger",
    "StreamTrigger",
    "Enqueue",
    "QueryParam",
    "HandlerCall",
    "HTTP_METHODS",
    "TRIGGER_TYPES",
    "route_key",
    # helpers
    "http",
    "api",
    "queue",
    "cron",
    "state",
    "stream",
    # config
    "parse_step_config",
    "parse_stream_config",
    "normalise_path",
    # discovery
    "discover",
    "Discovery",
    "StepError",
    "DEFAULT_DIRS",
    "compile_trigger_schemas",
    # calling
    "call_handler",
    "prepare_handler",
]
