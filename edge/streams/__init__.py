"""Streams: grouped items (``stream``, ``group``, ``id`` -> JSON object) with live fan-out.

A stream is declared in a ``*_stream.py`` file. ``storageType: "default"`` keeps its items in
LMDB (table ``streams``, key ``name NUL group NUL id``, msgpack values); ``"memory"`` keeps them
in RAM only, for high-frequency values that would otherwise wear the SD card.

Every change is pushed to the WebSocket subscribers of its group and of its item through the
:class:`Hub`, which knows nothing about sockets: a subscriber is anything with
``push(frame: str)``. Frames are encoded once per change, not once per subscriber.

Order. A durable change is published only after its group commit, in the order the writer
thread committed them: each write publishes from its transaction's ``after_commit`` hook, which
the store runs once per batch, in commit order, on the loop thread. Timestamps strictly
increase per ``(stream, group)``, because Motia's clients drop an update whose timestamp is
not newer than the last one they saw.

Stream triggers: every change of a stream that some step listens to calls
``on_change(txn, change)`` inside the write transaction of the change (memory streams: in a
transaction of its own), so the trigger messages the queue service stores there are
committed atomically with the change, like state triggers.

- :mod:`edge.streams.records`: changes, trigger events, subscriptions, ``StreamError``.
- :mod:`edge.streams.hub`: rooms, frames, timestamps.
- :mod:`edge.streams.store`: :class:`Streams`, storage and writes.
- :mod:`edge.streams.view`: ``ctx.streams``.

The WebSocket protocol on top is ``edge.server.ws``; user docs: docs/streams.md.
"""

from .hub import Hub
from .records import (
    AuthContext,
    Record,
    StreamChange,
    StreamError,
    StreamEvent,
    Subscription,
    matching_triggers,
)
from .store import Streams
from .view import StreamHandle, StreamsView

__all__ = [
    "Streams",
    "StreamHandle",
    "StreamsView",
    "StreamError",
    "StreamChange",
    "StreamEvent",
    "Subscription",
    "AuthContext",
    "Record",
    "Hub",
    "matching_triggers",
]
