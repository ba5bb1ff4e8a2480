"""Process limits edge raises for itself at start.

systemd gives a service a soft ``RLIMIT_NOFILE`` of 1,024 (and a hard one of 524,288): every
connection, WebSocket and LMDB file costs a descriptor, so 1,100 idle TCP connections would
lock every other client out. The soft limit may be raised to the hard one by the process
itself, without privileges. (Granian 2.8's native module happens to do the same when it is
imported; edge does it first, on purpose, and says so.)
"""

from __future__ import annotations

__all__ = ["raise_open_files_limit", "connection_limit"]


def raise_open_files_limit() -> str | None:
    """Raise the soft open-files limit to the hard limit; a debug line saying what changed.

    Returns None when there is nothing to raise (or the platform has no such limit).
    """
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses "unlimited" for RLIMIT_NOFILE; nr_open is 1,048,576
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:  # never lower it
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        return f"could not raise the open-files limit from {soft} to {target}: {exc}"
    return f"raised the open-files limit from {soft} to {target} (the hard limit)"


#: Descriptors kept for everything that is not a client connection (LMDB, logs, the
#: handlers' own files and sockets).
RESERVED_FILES = 256
#: Most client connections at once, whatever the open-files limit (each costs some kernel
#: and Granian memory; idle ones are closed after --idle-timeout).
MAX_CONNECTIONS = 16_384


def connection_limit(floor: int = 1024) -> int:
    """How many connections the server may hold at once: what the open-files limit leaves.

    Granian holds one permit per *connection* (its ``backpressure``, by default the listen
    backlog, 1,024), so without this 1,024 idle connections would stop it accepting any more.
    """
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except ImportError:
        return floor
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(floor, min(MAX_CONNECTIONS, soft - RESERVED_FILES))
