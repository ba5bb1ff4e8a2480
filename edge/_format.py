"""Small text helpers for what edge prints to people: counts, access lines.

Imports nothing from edge (any layer may use it).
"""

from __future__ import annotations

__all__ = ["plural", "access_line", "user_name", "printable", "clip"]


def clip(text: str, limit: int = 60) -> str:
    """``text`` for a message, cut to ``limit`` characters ("..." at the cut): an error never
    echoes a 100 KB input back."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Control characters as escapes (C0 but tab, DEL, C1): what a terminal would act on.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x09}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r"})
_ESCAPES_BUT_NEWLINES = {**_ESCAPES}
del _ESCAPES_BUT_NEWLINES[0x0A]


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``): a log line a
    client wrote into cannot start a forged line or move the operator's terminal (a tester
    printed a fake ``ERROR [Payments]`` line and cleared the screen through ``edge dev``).
    ``newlines`` keeps line breaks (a traceback's)."""
    return text.translate(_ESCAPES_BUT_NEWLINES if newlines else _ESCAPES)


def plural(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``, ``0 errors``; ``noun`` is the singular (``step file``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def access_line(method: str, path: str, status: int, duration_ms: float) -> str:
    """One readable line per HTTP request for ``edge dev``: ``POST   /todos 201 3.4 ms``.

    The method is padded to the longest (``OPTIONS``) so paths line up; the tracer adds the
    time stamp and the trace id, as on every dev log line.

    Args:
        path: the request path as sent, query string included when there is one.
        duration_ms: from the request's arrival to the response being handed to the server.
    """
    return f"{method:<7} {path} {status} {_ms(duration_ms)}"


def _ms(value: float) -> str:
    if value < 10:
        return f"{value:.1f} ms"
    return f"{value:.0f} ms"


def mib(n: int) -> str:
    """``12.4 MiB``: sizes of files and of buffered bytes, in messages."""
    return f"{n / (1 << 20):.1f} MiB"


def user_name(uid: int) -> str:
    """The user name of ``uid``, else the number (chown takes either)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
