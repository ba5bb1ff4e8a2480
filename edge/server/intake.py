"""Request bodies on their way in: a time limit and a memory budget.

Granian collects a body for ``await proto()`` without a time limit, and the connection's idle
timeout (``--idle-timeout``) covers only the request head. So a client that sends a head and
then its body slowly, or all of it but the last byte, held its connection and the part it sent
for good: a tester on the LAN took a server from 44 to 774 MiB with 600 such requests of 1 MB
each (within ``--max-body``), and with 16,384 of them it held every connection slot, so nobody
else got an answer. Two bounds, both cheap on the request path:

* **Time.** A body must arrive within ``--idle-timeout`` plus one second per :data:`MIN_RATE`
  bytes it declares (30 s + 64 s for 1 MiB). A late one is answered ``408`` and its connection
  closed; what had arrived is dropped. Deadlines are checked by one sweep a second while any
  body is being read, which cancels the reading request (no timer per request).
* **Memory.** The bodies being received at once may add up to :attr:`BodyIntake.per_client`
  bytes from one client address and :attr:`BodyIntake.total` from all (declared lengths,
  at least :data:`MIN_CHARGE` each, so tiny bodies cannot hold thousands of connections;
  a chunked body counts as ``--max-body``). A body past either is answered ``503`` with
  ``Retry-After`` before any of it is read, and its connection closed.

A chunked body also may come in at most :data:`MAX_PIECES` pieces: each piece costs a round
trip through Granian (100,000 one-byte chunks were 24 s of the server's CPU).
"""

from __future__ import annotations

import asyncio

from .._format import mib
from .bodies import ended_early
from .responses import error_response

__all__ = ["BodyIntake", "MIN_RATE", "MAX_PIECES"]

#: Bytes a second a body must average after the idle timeout's grace.
MIN_RATE = 16 * 1024
#: Pieces (chunks) a chunked request body may come in.
MAX_PIECES = 4096
#: Seconds between looks for bodies past their deadline.
SWEEP_INTERVAL = 1.0
#: What a body counts against the budgets at least: one address may be receiving at most
#: 1,024 bodies at once (16 MiB / 16 KiB), all clients 4,096.
MIN_CHARGE = 16 * 1024
#: Smallest budgets (bytes being received at once): from one client, and from all clients.
PER_CLIENT_FLOOR = 16 << 20
TOTAL_FLOOR = 64 << 20


class BodyIntake:
    """The bodies one app is receiving. The request path brackets each read with
    :meth:`begin` and :meth:`end` (kept to two calls: it is on every POST's path)."""

    def __init__(self, idle_timeout: float, max_body: int):
        self.grace = idle_timeout
        self.max_body = max_body
        #: Budgets, in bytes being received at once (both hold at least one --max-body body).
        self.per_client = max(PER_CLIENT_FLOOR, 2 * max_body)
        self.total = max(TOTAL_FLOOR, 4 * max_body)
        #: Bodies being received now, and their (declared) bytes.
        self.bodies = 0
        self.receiving = 0
        self._by_client: dict[str, int] = {}
        self._deadlines: dict[asyncio.Task, float] = {}  # the requests reading a body now
        self._late: set[asyncio.Task] = set()  # cancelled by the sweep for being late
        self._sweep: asyncio.TimerHandle | None = None

    def begin(self, task: asyncio.Task | None, client: str, size: int):
        """Admit a body of ``size`` bytes from ``client`` (``"ip:port"``) and start its clock:
        None, or the 503 to answer instead (nothing was counted then)."""
        address = client.rpartition(":")[0]
        mine = self._by_client.get(address, 0)
        deadline = self.grace + size / MIN_RATE
        if size < MIN_CHARGE:  # thousands of tiny half-sent bodies hold connections, not bytes
            size = MIN_CHARGE
        if mine + size > self.per_client:
            return _busy(f"edge is receiving {mib(mine)} of request bodies from {address} already, and takes "
                         f"at most {mib(self.per_client)} at once from one client")
        if self.receiving + size > self.total:
            return _busy(f"edge is receiving {mib(self.receiving)} of request bodies already, and takes at "
                         f"most {mib(self.total)} at once")
        self._by_client[address] = mine + size
        self.receiving += size
        self.bodies += 1
        if task is not None:
            loop = task.get_loop()  # (its clock, monotonic: tests run it on a virtual one)
            self._deadlines[task] = loop.time() + deadline
            if self._sweep is None:
                self._sweep = loop.call_later(SWEEP_INTERVAL, self._look, loop)
        return None

    def end(self, task: asyncio.Task | None, client: str, size: int) -> None:
        """The body admitted by :meth:`begin` was read, refused or cut off."""
        address = client.rpartition(":")[0]
        if size < MIN_CHARGE:
            size = MIN_CHARGE
        self.bodies -= 1
        self.receiving -= size
        left = self._by_client[address] - size
        if left:
            self._by_client[address] = left
        else:
            del self._by_client[address]
        if task is not None:
            self._deadlines.pop(task, None)

    def late(self, task: asyncio.Task | None) -> bool:
        """Whether the CancelledError ``task`` got is the sweep's (then it is no cancellation
        any more: the request goes on to answer its 408)."""
        if task is None or task not in self._late:
            return False
        self._late.discard(task)
        task.uncancel()
        return True

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self._deadlines.items()):
            if deadline <= now and task not in self._late:
                self._late.add(task)
                task.cancel()
        self._sweep = loop.call_later(SWEEP_INTERVAL, self._look, loop) if self._deadlines else None

    def timed_out(self, size: int, chunked: bool):
        """The 408 for a body of ``size`` bytes that did not arrive in time."""
        limit = self.grace + size / MIN_RATE
        what = f"up to --max-body ({size} bytes)" if chunked else f"for its {size} bytes"
        status, headers, body = error_response(
            408, detail=f"the request body did not arrive within {limit:.0f} s ({self.grace:g} s, then at least "
                        f"{MIN_RATE // 1024} KiB/s {what}); the connection is closed")
        headers.append(("connection", "close"))
        return status, headers, body

    async def read_chunked(self, proto, too_large):
        """A chunked body within --max-body and :data:`MAX_PIECES` (see ``edge.server.bodies``
        for how Granian says that one ended early)."""
        chunks, size, empty = [], 0, False
        async for chunk in proto:
            if not chunk:
                if empty:  # the second empty chunk: Granian's sign of a broken body
                    return b"", ended_early()
                empty = True
                continue
            size += len(chunk)
            if size > self.max_body:
                return b"", too_large()
            chunks.append(chunk)
            if len(chunks) > MAX_PIECES:
                status, headers, body = error_response(
                    413, detail=f"the chunked request body came in more than {MAX_PIECES} pieces; "
                                "send it in bigger chunks, or with a Content-Length")
                headers.append(("connection", "close"))
                return b"", (status, headers, body)
        return b"".join(chunks), None


def _busy(detail: str):
    status, headers, body = error_response(503, detail=f"{detail}; retry shortly")
    headers += [("retry-after", "2"), ("connection", "close")]
    return status, headers, body

