"""asyncio's own event loop on a clock the test moves (asyncio has no MockClock).

The loop fires its timers by :meth:`VirtualClockLoop.time`; code under test that reads its
deadlines off the loop's clock (``loop.time()``, ``call_later``) then sees seconds pass only
when the test sets ``loop.now``, and "not yet" can be asserted after the timer ran.
"""

from __future__ import annotations

import asyncio


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, on a clock that moves only when the test says so; it counts the
    intake's sweep timers armed (``sweeps_armed``)."""

    def __init__(self):
        super().__init__()
        self.now = 1000.0
        self.sweeps_armed = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback, *args, **kw):
        if getattr(callback, "__name__", "") == "_look":
            self.sweeps_armed += 1
        return super().call_at(when, callback, *args, **kw)


#: Turns of the loop a step of a test may take (a fault then fails the test, not hangs it).
TURNS = 100


async def until(done) -> None:
    """Let the loop run until ``done()``, for at most :data:`TURNS` turns."""
    for _ in range(TURNS):
        if done():
            return
        await asyncio.sleep(0)
    assert done(), "not within 100 turns of the loop"
