"""Live fan-out: rooms of subscribers, frames encoded once, strictly increasing timestamps."""

from __future__ import annotations

import time
from typing import Callable

import msgspec


__all__ = ["Hub"]

_json = msgspec.json.Encoder()

#: ``(stream, group)`` timestamp entries kept before stale ones are pruned.
_MAX_CLOCKS = 10_000
#: A lead over the wall clock this large (ms) is reported, and again each time it grows by as
#: much; a smaller one never is (a restart takes longer than that, so it is gone by then).
AHEAD_REPORT_MS = 100


class Hub:
    """Rooms of subscribers; ``publish`` encodes a frame once and pushes it to each subscriber once.

    A room is ``(stream, group, None)`` (a group subscription) or ``(stream, group, id)``. A
    subscriber in both the group room and the item room of a change gets one frame: Motia's
    client routes a frame with an ``id`` to both its item and its group listeners itself.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, floor: int = 0,
                 on_ahead: Callable[[int], None] | None = None):
        """``floor``: no timestamp at or below it (what an earlier run may have sent).
        ``on_ahead(ts)``: told when timestamps run ahead of the wall clock (more than 1,000
        frames a second to a group) by AHEAD_REPORT_MS, and every AHEAD_REPORT_MS more, so the
        next run can start above them; two frames in one millisecond tell it nothing."""
        self.rooms: dict[tuple, set] = {}
        self._clock = clock
        self._last: dict[tuple[str, str], int] = {}
        self._floor = floor
        self._on_ahead = on_ahead
        self._reported = 0
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
        last = self._last.get(key, self._floor)
        if now > last:
            ts = now
        else:  # ahead of the wall clock: clients keep the last timestamp across a restart
            ts = last + 1
            lead = ts - now
            if self._on_ahead is not None and lead >= AHEAD_REPORT_MS and ts >= self._reported + AHEAD_REPORT_MS:
                self._reported = ts
                self._on_ahead(ts)
        if len(self._last) >= _MAX_CLOCKS and key not in self._last:
            # Entries older than now cannot force a bump any more: forget them.
            self._last = {k: v for k, v in self._last.items() if v >= now}
        self._last[key] = ts
        return ts

    def latest(self, stream: str, group: str) -> int:
        """The current timestamp of ``(stream, group)`` without advancing it (the pieces of a
        sync: clients order ``create`` events by nothing, and thousands of them must not push
        the group's clock ahead of the wall clock)."""
        return max(int(self._clock() * 1000), self._last.get((stream, group), self._floor))

    def frame(self, stream: str, group: str, id: str | None, event: dict, timestamp: int | None = None) -> str:
        """Encode one server -> client message (``id`` None: a group message)."""
        message = {"type": "stream", "timestamp": self.timestamp(stream, group) if timestamp is None else timestamp,
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
