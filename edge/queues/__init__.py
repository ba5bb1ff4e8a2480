"""Durable queues: ``ctx.enqueue``, queue triggers, retries, dead letters, FIFO groups, delays.

- :mod:`edge.queues.records`: what is stored, the key layout, the backoff arithmetic.
- :mod:`edge.queues.committer`: every queue change in one transaction per round (group commit).
- :mod:`edge.queues.window`: a subscription's in-memory window and the loader that fills it.
- :mod:`edge.queues.timers`: retries, delays, loader continuations on trio's clock.
- :mod:`edge.queues.service`: :class:`QueueService` (enqueue, workers, retries, dead letters).
- :mod:`edge.queues.dlq`: reading and redriving dead letters.
- :mod:`edge.queues.endpoints`: ``POST /__edge/emit`` and ``/__edge/dlq``.

User-facing documentation: docs/queues.md.
"""

from __future__ import annotations

from .service import NotFound, Outgoing, QueueService
from .window import WINDOW, Subscription

__all__ = ["QueueService", "Subscription", "Outgoing", "NotFound", "WINDOW", "attach", "install"]


def attach(runtime, **options) -> QueueService:
    """Create the queue service for ``runtime``, make it ``runtime.queues`` and register its
    ``serve`` with the runtime (call before ``runtime.serve``). Idempotent.

    This is the glue between the layers: the service itself takes the runtime's ``invoke``
    and its two outcome exceptions as arguments, and never imports the runtime.
    """
    if isinstance(runtime.queues, QueueService):
        return runtime.queues
    from ..runtime import HandlerError, Skipped
    from ..state import StateEvent
    from ..streams import StreamEvent

    options.setdefault("trigger_inputs", {"stream": StreamEvent, "state": StateEvent})
    service = QueueService(
        runtime.store, runtime.steps.values(), schema_for=runtime.schema_for, invoke=runtime.invoke,
        skipped=Skipped, failed=HandlerError, tracer=runtime.tracer, **options,
    )
    runtime.queues = service
    runtime.add_service(service.serve)
    return service


def install(runtime, app) -> None:
    """Server installer: attach the service and add its ``/__edge/`` endpoints to ``app``."""
    from .endpoints import install_endpoints

    attach(runtime)
    install_endpoints(app)
