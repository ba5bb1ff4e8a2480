"""Small text helpers for what edge prints to people: counts, access lines.

Imports nothing from edge (any layer may use it).
"""

from __future__ import annotations

import time

__all__ = ["plural", "access_line"]


def plural(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``, ``0 errors``; ``noun`` is the singular (``step file``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def access_line(method: str, path: str, status: int, duration_ms: float, *,
                trace_id: str | None = None, at: float | None = None) -> str:
    """One readable line per HTTP request for ``edge dev``, with the tracer's readable time stamp.

    ``12:04:31.250 POST   /todos 201 3.4 ms (0f9d9d0e)``: method padded to the longest
    (``DELETE``, ``OPTIONS``) so paths line up; the trace id shortened as in dev log lines.

    Args:
        path: the request path as sent, query string included when there is one.
        duration_ms: from the request's arrival to the response being handed to the server.
        at: wall-clock time of the request (default now).
    """
    at = time.time() if at is None else at
    stamp = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
    trace = f" ({trace_id[:8]})" if trace_id else ""
    return f"{stamp} {method:<7}{path} {status} {_ms(duration_ms)}{trace}"


def _ms(value: float) -> str:
    if value < 10:
        return f"{value:.1f} ms"
    return f"{value:.0f} ms"
