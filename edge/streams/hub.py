"""Live fan-out: rooms of subscribers, frames encoded once, strictly increasing timestamps,
and the release of committed changes in commit order."""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Callable, Iterator

import msgspec

from .records import StreamChange

__all__ = ["Hub", "Ordered"]

_json = msgspec.json.Encoder()

#: ``(stream, group)`` timestamp entries kept before stale ones are pruned.
_MAX_CLOCKS = 10_000


class Hub:
    """Rooms of subscribers; ``publish`` encodes a frame once and pushes it to each subscriber once.

    A room is ``(stream, group, None)`` (a group subscription) or ``(stream, group, id)``. A
    subscriber in both the group room and the item room of a change gets one frame: Motia's
    client routes a frame with an ``id`` to both its item and its group listeners itself.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self.rooms: dict[tuple, set] = {}
        self._clock = clock
        self._last: dict[tuple[str, str], int] = {}
        self.published = 0

    def add(self, room: tuple, subscriber) -> None:
        self.rooms.setdefault(room, set()).add(subscriber)

    def remove(self, room: tuple, subscriber) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self.rooms[room]

    def timestamp(self, stream: str, group: str) -> int:
        """Milliseconds since the epoch, strictly increasing per ``(stream, group)``."""
        now = int(self._clock() * 1000)
        key = (stream, group)
        last = self._last.get(key, 0)
        ts = now if now > last else last + 1
        if len(self._last) >= _MAX_CLOCKS and key not in self._last:
            # Entries older than now cannot force a bump any more: forget them.
            self._last = {k: v for k, v in self._last.items() if v >= now}
        self._last[key] = ts
        return ts

    def frame(self, stream: str, group: str, id: str | None, event: dict) -> str:
        """Encode one server -> client message (``id`` None: a group message)."""
        message = {"type": "stream", "timestamp": self.timestamp(stream, group),
                   "streamName": stream, "groupId": group}
        if id is not None:
            message["id"] = id
        message["event"] = event
        return _json.encode(message).decode()

    def publish(self, stream: str, group: str, id: str | None, event: dict) -> int:
        """Push ``event`` to the group room (and the item room when ``id`` is given); returns receivers."""
        group_room = self.rooms.get((stream, group, None))
        item_room = self.rooms.get((stream, group, id)) if id is not None else None
        if group_room and item_room:
            targets = group_room | item_room
        else:
            targets = group_room or item_room
        if not targets:
            return 0
        frame = self.frame(stream, group, id, event)
        for subscriber in tuple(targets):  # a push may disconnect a subscriber (and edit the room)
            subscriber.push(frame)
        self.published += 1
        return len(targets)


class Ordered:
    """Releases stamped changes to ``publish`` in stamp (= commit) order."""

    def __init__(self, publish: Callable[[StreamChange], None]):
        self._publish = publish
        self._counter = itertools.count()
        self._next = 0
        self._done: dict[int, StreamChange | None] = {}

    def stamp(self, change: StreamChange) -> None:
        """Called last inside the write transaction (writer thread); once, even if replayed."""
        if change.seq is None:
            change.seq = next(self._counter)

    @contextlib.contextmanager
    def releasing(self, change: StreamChange) -> Iterator[None]:
        """Around the write of ``change``: resolve it as committed only if the body returned."""
        committed = False
        try:
            yield
            committed = True
        finally:
            self.resolve(change, committed)

    def resolve(self, change: StreamChange, committed: bool) -> None:
        """Called on the trio thread once the write returned (or failed)."""
        if change.seq is None:
            return  # failed before it was stamped: nothing to release
        self._done[change.seq] = change if committed else None
        while self._next in self._done:
            ready = self._done.pop(self._next)
            self._next += 1
            if ready is not None:
                self._publish(ready)
