"""One timer heap for the queue service: retries, delayed deliveries, loader continuations.

Waits use trio's monotonic clock, so tests drive them with ``MockClock``.
"""

from __future__ import annotations

import heapq
import itertools
import math

import trio

__all__ = ["Timers"]


class Timers:
    """``at(delay, fn, *args)`` calls ``fn(*args)`` on the event loop ``delay`` seconds from now."""

    def __init__(self, on_error=None):
        #: ``fn(message, exc)`` for a callback that raised: logged, and the timers go on.
        self._on_error = on_error
        self._heap: list = []
        self._lot = trio.lowlevel.ParkingLot()
        self._tick = itertools.count()  # orders entries due at the same instant

    def at(self, delay: float, fn, *args) -> None:
        entry = (trio.current_time() + delay, next(self._tick), fn, args)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:  # earlier than what the loop sleeps towards
            self._lot.unpark()

    @property
    def next_at(self) -> float | None:
        """When (trio's clock) the earliest callback is due; None: nothing is scheduled."""
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> None:
        """Call every callback that is due (one step of :meth:`serve`)."""
        heap, now = self._heap, trio.current_time()
        while heap and heap[0][0] <= now:
            _, _, fn, args = heapq.heappop(heap)
            try:
                fn(*args)
            except Exception as exc:  # one bad callback must not stop retries and delays
                if self._on_error is None:
                    raise
                self._on_error(f"edge: a queue timer callback failed: {type(exc).__name__}: {exc}", exc)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.run_due()
            with trio.move_on_at(self._heap[0][0] if self._heap else math.inf):
                await self._lot.park()
