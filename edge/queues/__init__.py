"""Durable queues: ``ctx.enqueue``, queue triggers, retries, dead letters, FIFO groups, delays.

- :mod:`edge.queues.records`: what is stored, the key layout, the backoff arithmetic.
- :mod:`edge.queues.committer`: every queue change in one transaction per round (group commit).
- :mod:`edge.queues.window`: a subscription's in-memory window and the loader that fills it.
- :mod:`edge.queues.timers`: retries, delays, loader continuations on trio's clock.
- :mod:`edge.queues.service`: :class:`QueueService` (enqueue, workers, retries, dead letters).
- :mod:`edge.queues.dlq`: reading and redriving dead letters.
- :mod:`edge.queues.endpoints`: ``POST /__edge/emit`` and ``/__edge/dlq``.

The runtime (the composition root) builds the service with its ``invoke``; this package
never imports the runtime. User-facing documentation: docs/queues.md.
"""

from __future__ import annotations

from .service import NotFound, Outgoing, QueueService
from .window import WINDOW, Subscription

__all__ = ["QueueService", "Subscription", "Outgoing", "NotFound", "WINDOW"]
